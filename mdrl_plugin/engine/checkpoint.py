"""Safe checkpoint loading for MMEngine checkpoints under torch >= 2.6.

``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and MMEngine
0.10.7 checkpoints hold a few non-tensor objects (the message hub's
``HistoryBuffer`` with numpy arrays and scalars), so MMEngine can no longer
read its own checkpoints. Turning full unpickling on for everyone would let any
checkpoint run code on load. This module instead loads with torch's restricted
``weights_only`` unpickler plus an explicit allow-list of exactly the extra
globals MMEngine checkpoints contain:

* ``mmengine.logging.history_buffer.HistoryBuffer``;
* numpy's ``_reconstruct``, ``scalar`` (both the numpy 1 ``numpy.core`` and the
  numpy 2 ``numpy._core`` spellings), ``ndarray``, ``dtype`` and the numpy 2
  dtype classes ``numpy.dtypes.*DType``;
* ``builtins.getattr``, which pickle uses for ``HistoryBuffer``'s statistic
  methods (``getattr(HistoryBuffer, 'min')``); it is replaced by a restricted
  version that only returns those statistic methods of ``HistoryBuffer``.

Anything else (``os.system``, ``subprocess.Popen``, an arbitrary class) is
refused with :class:`UnsafeCheckpointError`, which names the file and the
offending global. Trusted files can still be loaded with full unpickling, by
``safe_torch_load(..., allow_unsafe=True)`` or process-wide with
:func:`set_allow_unsafe_checkpoints` (the tools'
``--allow-unsafe-checkpoint``).

Importing this module registers :func:`load_from_local_safe` as MMEngine's
loader for local paths, so ``Runner.resume``, ``load_from`` and
``mmengine.runner.load_checkpoint`` all go through :func:`safe_torch_load`.
"""
import _compat_pickle
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = [
    'CheckpointLoadError', 'UnsafeCheckpointError', 'safe_torch_load',
    'set_allow_unsafe_checkpoints', 'unsafe_checkpoints_allowed',
    'load_from_local_safe', 'find_resumable_checkpoint',
    'is_complete_checkpoint', 'ALLOWED_CHECKPOINT_GLOBALS'
]

MapLocation = Union[None, str, torch.device, Callable, Dict[str, str]]

#: ``HistoryBuffer`` attributes that ``builtins.getattr`` may return.
HISTORY_BUFFER_STATISTICS = frozenset({'min', 'max', 'mean', 'current'})

_ALLOW_UNSAFE = False

_OPT_IN_HINT = (
    'If you trust this file, load it with full unpickling: pass '
    '--allow-unsafe-checkpoint to tools/train.py or tools/test.py, or call '
    'safe_torch_load(path, allow_unsafe=True) / '
    'mdrl_plugin.engine.set_allow_unsafe_checkpoints(True). Never do this '
    'for files from an untrusted source: unpickling can run arbitrary code.')


class CheckpointLoadError(RuntimeError):
    """A checkpoint file could not be read (truncated, not a checkpoint...).

    Args:
        path: The checkpoint file.
        reason: What went wrong.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"Could not load checkpoint '{path}': {reason}")


class UnsafeCheckpointError(CheckpointLoadError):
    """A checkpoint holds pickled globals outside the safe allow-list.

    Args:
        path: The checkpoint file.
        offending: The refused globals as ``module.name`` strings (may be
            empty when torch could not tell which one).
        detail: The underlying unpickler message, if any.
    """

    def __init__(self, path: str, offending: Sequence[str],
                 detail: str = '') -> None:
        self.path = path
        self.offending = list(offending)
        self.detail = detail
        if self.offending:
            what = ('the pickled global(s) ' +
                    ', '.join(self.offending) +
                    ', which the safe loader does not allow (a pickled '
                    'callable or class can run code while it is loaded)')
        else:
            what = ('objects the safe loader could not verify ('
                    f'{detail.strip().splitlines()[-1] if detail else "?"})')
        message = (f"Refusing to load checkpoint '{path}': it contains "
                   f'{what}. {_OPT_IN_HINT}')
        RuntimeError.__init__(self, message)
        self.reason = message


class _RefusedGetattr(Exception):
    """Raised inside unpickling by the restricted ``getattr``.

    Deliberately not a ``pickle.UnpicklingError`` so that torch does not
    rewrap it; :func:`safe_torch_load` turns it into
    :class:`UnsafeCheckpointError`.
    """

    def __init__(self, description: str) -> None:
        self.description = description
        super().__init__(description)


def _describe(obj: Any) -> str:
    """``module.qualname`` of a class/function, else its type name."""
    module = getattr(obj, '__module__', None)
    qualname = getattr(obj, '__qualname__', None)
    if module and qualname and isinstance(qualname, str):
        return f'{module}.{qualname}'
    return f'<{type(obj).__module__}.{type(obj).__qualname__} object>'


def _restricted_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` limited to ``HistoryBuffer``'s statistic methods.

    Args:
        obj: Must be the ``HistoryBuffer`` class.
        name: Must be one of :data:`HISTORY_BUFFER_STATISTICS`.
        default: Refused (``getattr`` with a default is never needed).

    Returns:
        The statistic method.
    """
    if (obj is HistoryBuffer and isinstance(name, str)
            and name in HISTORY_BUFFER_STATISTICS and not default):
        return getattr(HistoryBuffer, name)
    raise _RefusedGetattr(f'builtins.getattr({_describe(obj)}, {name!r})')


def _numpy_multiarray_module():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _build_allowed_globals() -> List[Tuple[Any, str]]:
    multiarray = _numpy_multiarray_module()
    allowed: List[Tuple[Any, str]] = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
        (_restricted_getattr, 'builtins.getattr'),
    ]
    # files written with numpy 1.x say numpy.core, numpy 2 says numpy._core
    for package in ('numpy.core', 'numpy._core'):
        allowed.append((multiarray._reconstruct,
                        f'{package}.multiarray._reconstruct'))
        allowed.append((multiarray.scalar, f'{package}.multiarray.scalar'))
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:  # numpy >= 1.25
        for name in sorted(dir(dtypes)):
            cls = getattr(dtypes, name)
            if (name.endswith('DType') and isinstance(cls, type)
                    and issubclass(cls, np.dtype)):
                allowed.append((cls, f'numpy.dtypes.{name}'))
    return allowed


#: The extra globals permitted on top of torch's ``weights_only`` defaults, as
#: ``(object, 'module.name')`` pairs. ``builtins.getattr`` maps to a
#: restricted function.
ALLOWED_CHECKPOINT_GLOBALS: List[Tuple[Any, str]] = _build_allowed_globals()


def set_allow_unsafe_checkpoints(allow: bool) -> None:
    """Switch full (unsafe) unpickling on or off for this whole process.

    Off by default. The tools turn it on for ``--allow-unsafe-checkpoint``.
    It affects :func:`safe_torch_load` and therefore every MMEngine
    checkpoint load of local files.

    Args:
        allow: ``True`` to load every checkpoint with full pickle (only for
            files you trust), ``False`` for the safe allow-list.
    """
    global _ALLOW_UNSAFE
    _ALLOW_UNSAFE = bool(allow)
    if _ALLOW_UNSAFE:
        print_log(
            'Unsafe checkpoint loading is ON: checkpoints are unpickled '
            'without restrictions. Only load files you trust.',
            logger='current', level=logging.WARNING)


def unsafe_checkpoints_allowed() -> bool:
    """Whether :func:`set_allow_unsafe_checkpoints` turned unsafe loading on.

    Returns:
        The current process-wide switch.
    """
    return _ALLOW_UNSAFE


def _python3_name(full_name: str) -> str:
    """Map a protocol-2 pickle name (``commands.Popen``) to Python 3's."""
    module, _, name = full_name.rpartition('.')
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return '.'.join(_compat_pickle.NAME_MAPPING[(module, name)])
    if module in _compat_pickle.IMPORT_MAPPING:
        return f'{_compat_pickle.IMPORT_MAPPING[module]}.{name}'
    return full_name


def _find_refused_globals(path: str, message: str) -> List[str]:
    """Names of the globals that the restricted unpickler refuses."""
    names: List[str] = []
    try:
        with torch.serialization.safe_globals(ALLOWED_CHECKPOINT_GLOBALS):
            names = sorted(
                torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) format or an unreadable pickle
        names = []
    if not names:
        names = sorted(set(re.findall(r'GLOBAL (\S+)', message)))
    return sorted({_python3_name(n) for n in names})


def _load_safetensors(path: str, map_location: MapLocation) -> Any:
    from safetensors.torch import load_file
    device = 'cpu'
    if isinstance(map_location, (str, torch.device)):
        device = str(map_location)
    try:
        return load_file(path, device=device)
    except Exception as e:
        raise CheckpointLoadError(path, f'not a valid safetensors file ({e})')


def safe_torch_load(path: Union[str, os.PathLike],
                    map_location: MapLocation = 'cpu',
                    allow_unsafe: bool = False) -> Any:
    """Load a ``torch.save`` file (or a ``.safetensors`` file) safely.

    The file is read with torch's ``weights_only`` unpickler and the extra
    allow-list :data:`ALLOWED_CHECKPOINT_GLOBALS` (what MMEngine checkpoints
    need), so plain state dicts, MMEngine checkpoints and pretrained weights
    load while pickled code does not run.

    Args:
        path: The file. ``.safetensors`` files are read with ``safetensors``.
        map_location: As in :func:`torch.load`.
        allow_unsafe: Load with full unpickling (only for trusted files). The
            process-wide :func:`set_allow_unsafe_checkpoints` has the same
            effect.

    Returns:
        The loaded object (usually a dict).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnsafeCheckpointError: The file holds a global outside the allow-list.
        CheckpointLoadError: The file is truncated or not a checkpoint.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint file '{path}' does not exist or is not a file.")
    if path.endswith('.safetensors'):
        return _load_safetensors(path, map_location)
    if allow_unsafe or _ALLOW_UNSAFE:
        try:
            return torch.load(
                path, map_location=map_location, weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError,
                zipfile.BadZipFile) as e:
            raise CheckpointLoadError(path, str(e)) from e
    with torch.serialization.safe_globals(ALLOWED_CHECKPOINT_GLOBALS):
        try:
            return torch.load(
                path, map_location=map_location, weights_only=True)
        except _RefusedGetattr as e:
            raise UnsafeCheckpointError(path, [e.description]) from None
        except pickle.UnpicklingError as e:
            message = str(e)
            raise UnsafeCheckpointError(
                path, _find_refused_globals(path, message), message) from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
            raise CheckpointLoadError(
                path, f'{e} (the file may be truncated or is not a PyTorch '
                'checkpoint)') from e


def load_from_local_safe(filename: str, map_location: MapLocation) -> Any:
    """MMEngine ``CheckpointLoader`` scheme for local paths (prefix ``''``).

    Registered when :mod:`mdrl_plugin` is imported; replaces MMEngine's
    ``load_from_local``.

    Args:
        filename: Local checkpoint path.
        map_location: As in :func:`torch.load`.

    Returns:
        The loaded checkpoint.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location=map_location)


CheckpointLoader.register_scheme(
    prefixes='', loader=load_from_local_safe, force=True)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip file.

    A file cut short by a kill lacks the zip's central directory (it is
    written last), so it fails this check.

    Args:
        path: Candidate file.

    Returns:
        ``True`` for a readable zip archive holding a ``data.pkl``.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith('data.pkl') for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


_CKPT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete checkpoint of a work dir, for ``--resume``.

    Reads MMEngine's ``last_checkpoint`` pointer first. When the pointer is
    missing, empty, truncated, or names a missing or incomplete file (a kill
    during a save), falls back to the newest complete ``epoch_N.pth`` /
    ``iter_N.pth`` in ``work_dir`` (by modification time, then ``N``).

    Args:
        work_dir: The run's work directory.

    Returns:
        A checkpoint path, or ``None`` when there is nothing to resume.
    """
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            target = f.read().strip()
        if target and is_complete_checkpoint(target):
            return target
        print_log(
            f"'{pointer}' names {target!r}, which is not a complete "
            'checkpoint; looking for the newest complete one instead.',
            logger='current', level=logging.WARNING)
    if not osp.isdir(work_dir):
        return None
    candidates = []
    for name in os.listdir(work_dir):
        match = _CKPT_NAME.match(name)
        if match:
            full = osp.join(work_dir, name)
            candidates.append((os.stat(full).st_mtime_ns, int(match.group(2)),
                               full))
    for _, _, full in sorted(candidates, reverse=True):
        if is_complete_checkpoint(full):
            return full
        print_log(f"Skipping incomplete checkpoint '{full}'.",
                  logger='current', level=logging.WARNING)
    return None

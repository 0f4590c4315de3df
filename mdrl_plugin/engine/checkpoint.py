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

Importing this module changes nothing. :func:`enable_safe_checkpoint_loading`
(called by the plugin's tools, by :class:`CheckpointLoadingHook` from a config,
or by a user in one line) registers :func:`load_from_local_safe` as MMEngine's
loader for local paths, so that ``Runner.resume``, ``load_from`` and
``mmengine.runner.load_checkpoint`` go through :func:`safe_torch_load`; it can
add the user's own classes to the allow-list.

:func:`load_model_weights` loads a checkpoint into a model and refuses one
whose keys or shapes do not match (:class:`CheckpointMismatchError`) unless
``allow_partial=True``.
"""
import _compat_pickle
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from collections import OrderedDict
from typing import (Any, Callable, Dict, Iterable, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        _load_checkpoint_to_model)
from mmengine.utils import get_object_from_string

__all__ = [
    'CheckpointLoadError', 'UnsafeCheckpointError', 'safe_torch_load',
    'set_allow_unsafe_checkpoints', 'unsafe_checkpoints_allowed',
    'load_from_local_safe', 'find_resumable_checkpoint',
    'is_complete_checkpoint', 'ALLOWED_CHECKPOINT_GLOBALS',
    'enable_safe_checkpoint_loading', 'disable_safe_checkpoint_loading',
    'safe_checkpoint_loading_enabled', 'CheckpointMismatchError',
    'StateDictMatch', 'match_state_dict', 'check_state_dict',
    'load_model_weights'
]

MapLocation = Union[None, str, torch.device, Callable, Dict[str, str]]

#: ``HistoryBuffer`` attributes that ``builtins.getattr`` may return.
HISTORY_BUFFER_STATISTICS = frozenset({'min', 'max', 'mean', 'current'})

_ALLOW_UNSAFE = False
#: Globals added by users through :func:`enable_safe_checkpoint_loading`.
_EXTRA_GLOBALS: List[Any] = []
#: MMEngine's loader for local paths, kept while the safe one is registered.
_REPLACED_LOADER: Optional[Callable] = None

_EXTEND_HINT = (
    'If the file is yours and holds a class you trust, add it to the allow-'
    'list: mdrl_plugin.engine.enable_safe_checkpoint_loading(allow_globals='
    "['module.Name']), or in a config custom_hooks=[dict(type="
    "'CheckpointLoadingHook', allow_globals=['module.Name'])].")

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
                   f'{what}. {_EXTEND_HINT} {_OPT_IN_HINT}')
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


def _allowed_globals() -> List[Any]:
    """The built-in allow-list plus the user's additions."""
    return list(ALLOWED_CHECKPOINT_GLOBALS) + _EXTRA_GLOBALS


#: How files written by ``torch.save`` start: a zip archive (the default
#: since torch 1.6) or a pickle (the legacy format, protocol 2 or higher).
_TORCH_FILE_HEADERS = (b'PK\x03\x04', b'\x80')


def _check_torch_file_header(path: str) -> None:
    """Refuse a file that ``torch.save`` cannot have written.

    Raises:
        CheckpointLoadError: Naming the file and what it starts with.
    """
    with open(path, 'rb') as f:
        head = f.read(8)
    if not head.startswith(_TORCH_FILE_HEADERS):
        what = f'starts with {head!r}' if head else 'is empty'
        raise CheckpointLoadError(
            path, 'it is not a PyTorch checkpoint (a file written by '
            'torch.save is a zip archive or a pickle; this one '
            f'{what}). Check the path: it should name a .pth file written '
            'by training.')


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
        with torch.serialization.safe_globals(_allowed_globals()):
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
        CheckpointLoadError: The file is truncated or not a PyTorch
            checkpoint at all.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint file '{path}' does not exist or is not a file.")
    if path.endswith('.safetensors'):
        return _load_safetensors(path, map_location)
    _check_torch_file_header(path)
    if allow_unsafe or _ALLOW_UNSAFE:
        try:
            return torch.load(
                path, map_location=map_location, weights_only=False)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError,
                zipfile.BadZipFile) as e:
            raise CheckpointLoadError(path, str(e)) from e
    with torch.serialization.safe_globals(_allowed_globals()):
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

    Registered by :func:`enable_safe_checkpoint_loading` in place of
    MMEngine's ``load_from_local``.

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


def _resolve_global(item: Union[str, Any]) -> Any:
    """``'module.Name'`` -> the object; an object stays as it is."""
    if not isinstance(item, str):
        return item
    obj = get_object_from_string(item)
    if obj is None:
        raise ValueError(
            f'allow_globals: cannot import {item!r}; give the full '
            "'module.Name' of a class or function you trust.")
    return obj


def enable_safe_checkpoint_loading(
        allow_globals: Iterable[Union[str, Any]] = (),
        allow_unsafe: bool = False) -> None:
    """Load every local MMEngine checkpoint with :func:`safe_torch_load`.

    Registers :func:`load_from_local_safe` as MMEngine's ``CheckpointLoader``
    scheme for local paths (what ``load_from``, ``Runner.resume`` and
    ``mmengine.runner.load_checkpoint`` use). Needed with torch >= 2.6, whose
    default ``weights_only`` loader cannot read MMEngine 0.10.7 checkpoints.
    The plugin's tools call it; importing the plugin does not. One line::

        mdrl_plugin.engine.enable_safe_checkpoint_loading()

    Calling it again adds ``allow_globals``; it is undone by
    :func:`disable_safe_checkpoint_loading`.

    Args:
        allow_globals: Extra classes/functions that checkpoints may hold, as
            objects or ``'module.Name'`` strings (only ones you trust:
            unpickling calls them).
        allow_unsafe: Also switch full unpickling on process-wide (see
            :func:`set_allow_unsafe_checkpoints`).

    Raises:
        ValueError: A ``'module.Name'`` cannot be imported.
    """
    global _REPLACED_LOADER
    for item in allow_globals:
        obj = _resolve_global(item)
        if obj not in _EXTRA_GLOBALS:
            _EXTRA_GLOBALS.append(obj)
    current = CheckpointLoader._schemes.get('')
    if current is not load_from_local_safe:
        _REPLACED_LOADER = current
        CheckpointLoader.register_scheme(
            prefixes='', loader=load_from_local_safe, force=True)
    if allow_unsafe:
        set_allow_unsafe_checkpoints(True)


def disable_safe_checkpoint_loading() -> None:
    """Undo :func:`enable_safe_checkpoint_loading`.

    Puts MMEngine's previous local loader back and empties the user's
    allow-list additions.
    """
    global _REPLACED_LOADER
    if CheckpointLoader._schemes.get('') is load_from_local_safe and \
            _REPLACED_LOADER is not None:
        CheckpointLoader._schemes[''] = _REPLACED_LOADER
    _REPLACED_LOADER = None
    _EXTRA_GLOBALS.clear()


def safe_checkpoint_loading_enabled() -> bool:
    """Whether MMEngine's local checkpoint loader is the safe one.

    Returns:
        ``True`` after :func:`enable_safe_checkpoint_loading`.
    """
    return CheckpointLoader._schemes.get('') is load_from_local_safe


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


class StateDictMatch(NamedTuple):
    """How a checkpoint's ``state_dict`` fits a model.

    Attributes:
        mismatched: ``(key, checkpoint shape, model shape)`` of the weights
            whose shapes differ.
        missing: Model keys the checkpoint lacks.
        unexpected: Checkpoint keys the model does not have.
    """
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]
    missing: List[str]
    unexpected: List[str]

    @property
    def fits(self) -> bool:
        """Whether every weight of the model is in the checkpoint."""
        return not (self.mismatched or self.missing or self.unexpected)

    def uninitialised(self) -> List[str]:
        """Model keys that the checkpoint does not fill."""
        return sorted(self.missing + [k for k, _, _ in self.mismatched])


class CheckpointMismatchError(ValueError, RuntimeError):
    """A checkpoint's weights do not fit the model (another config?).

    A ``ValueError``; also a ``RuntimeError``, which is what MMEngine's
    ``load_checkpoint(..., strict=True)`` raises, so code catching that keeps
    working.

    Args:
        filename: The checkpoint.
        match: The comparison of :func:`match_state_dict`.
        config: The model's config file, named in the message if given.
        show: How many keys of each kind the message names.
    """

    def __init__(self, filename: str, match: StateDictMatch,
                 config: Optional[str] = None, show: int = 3) -> None:
        self.filename = filename
        self.match = match
        self.config = config
        parts = []
        if match.mismatched:
            shapes = '; '.join(
                f'{k}: checkpoint {tuple(c)} vs model {tuple(m)}'
                for k, c, m in match.mismatched[:show])
            more = (f' and {len(match.mismatched) - show} more'
                    if len(match.mismatched) > show else '')
            parts.append(f'{len(match.mismatched)} weight(s) of another '
                         f'shape ({shapes}{more})')
        parts.append(f'{len(match.missing)} missing key(s)' +
                     (f' (e.g. {", ".join(match.missing[:show])})'
                      if match.missing else ''))
        parts.append(f'{len(match.unexpected)} unexpected key(s)' +
                     (f' (e.g. {", ".join(match.unexpected[:show])})'
                      if match.unexpected else ''))
        super().__init__(
            f'Checkpoint {filename!r} does not fit the model'
            f'{f" of config {config!r}" if config else ""}: '
            f'{", ".join(parts)}. It was most likely written for another '
            'config (another model, width or number of identities): use the '
            'config it was trained with. To load only the weights that fit '
            'and keep the others at their initialisation, pass '
            '--allow-partial-checkpoint (tools) or allow_partial=True.')


def _model_of(model: torch.nn.Module) -> torch.nn.Module:
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


def match_state_dict(model: torch.nn.Module,
                     state_dict: Dict[str, Any]) -> StateDictMatch:
    """Compare a ``state_dict``'s keys and shapes with a model's.

    A ``module.`` prefix (a checkpoint of a wrapped model) is ignored, as in
    MMEngine's loader, and so are BatchNorm's ``num_batches_tracked``
    counters.

    Args:
        model: The model (a model wrapper is unwrapped).
        state_dict: Weights by key.

    Returns:
        The comparison.
    """
    expected = _model_of(model).state_dict()
    given = {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}
    mismatched = [(k, tuple(given[k].shape), tuple(v.shape))
                  for k, v in expected.items()
                  if k in given and hasattr(given[k], 'shape')
                  and tuple(given[k].shape) != tuple(v.shape)]
    missing = [k for k in expected
               if k not in given and not k.endswith('num_batches_tracked')]
    unexpected = [k for k in given if k not in expected]
    return StateDictMatch(mismatched, missing, unexpected)


def check_state_dict(model: torch.nn.Module,
                     state_dict: Dict[str, Any],
                     filename: str,
                     allow_partial: bool = False,
                     logger: Union[str, logging.Logger] = 'current',
                     config: Optional[str] = None) -> StateDictMatch:
    """Refuse (or, if allowed, report) a ``state_dict`` that does not fit.

    Args:
        model: The model.
        state_dict: The checkpoint's weights.
        filename: The checkpoint, for the messages.
        allow_partial: Log what stays uninitialised instead of raising.
        logger: Where the partial-load report goes (``print_log``'s logger).
        config: The model's config file, for the message.

    Returns:
        The comparison.

    Raises:
        CheckpointMismatchError: The weights do not fit and
            ``allow_partial`` is ``False``.
    """
    match = match_state_dict(model, state_dict)
    if match.fits:
        return match
    if not allow_partial:
        raise CheckpointMismatchError(filename, match, config)
    left = match.uninitialised()
    print_log(
        f"Partial checkpoint '{filename}' (allowed): {len(left)} model "
        f'weight(s) left uninitialised: {", ".join(left) or "none"}; '
        f'{len(match.unexpected)} checkpoint key(s) ignored'
        + (f': {", ".join(match.unexpected)}' if match.unexpected else '')
        + '.', logger=logger, level=logging.WARNING)
    return match


def load_model_weights(model: torch.nn.Module,
                       filename: str,
                       *,
                       allow_partial: bool = False,
                       map_location: MapLocation = 'cpu',
                       logger: Union[str, logging.Logger] = 'current',
                       config: Optional[str] = None) -> Dict[str, Any]:
    """Load a checkpoint's weights into ``model``, strictly by default.

    Local files are read with :func:`safe_torch_load` (whether or not
    :func:`enable_safe_checkpoint_loading` was called), other URIs with
    MMEngine's ``CheckpointLoader``. The weights must match the model's keys
    and shapes exactly unless ``allow_partial=True``, in which case what
    fits is loaded and the rest is logged.

    Args:
        model: The model (a model wrapper is unwrapped).
        filename: Checkpoint path or URI; the weights are its
            ``'state_dict'`` (MMEngine) or the whole dict (plain state dict).
        allow_partial: Load a checkpoint that does not fit.
        map_location: As in :func:`torch.load`.
        logger: Where the partial-load report goes.
        config: The model's config file, for the error message.

    Returns:
        The loaded checkpoint.

    Raises:
        FileNotFoundError: A local ``filename`` does not exist.
        CheckpointLoadError: The file is not a readable checkpoint.
        CheckpointMismatchError: The weights do not fit the model.
    """
    filename = os.fspath(filename)
    if '://' in filename:
        checkpoint = _load_checkpoint(filename, map_location=map_location)
    else:
        checkpoint = safe_torch_load(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointLoadError(
            filename, f'expected a dict of weights, got '
            f'{type(checkpoint).__name__}')
    state_dict = checkpoint.get('state_dict', checkpoint)
    check_state_dict(model, state_dict, filename, allow_partial, logger,
                     config)
    _load_checkpoint_to_model(
        _model_of(model), OrderedDict(state_dict=state_dict),
        strict=not allow_partial, logger='silent')
    return checkpoint

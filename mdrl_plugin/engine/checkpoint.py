"""Safe and strict checkpoint loading. torch's ``weights_only`` loader
refuses MMEngine checkpoints (a message hub of ``HistoryBuffer`` and numpy
objects): :func:`safe_torch_load` allows exactly those globals."""
import logging
import os
import os.path as osp
import pickle
import re
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (
    CheckpointLoader,
    load_from_local,
    load_state_dict,
)
from mmengine.utils import get_object_from_string

_HINT = (
    'If the file is yours and holds a class you trust, add it to the allow-'
    'list: mdrl_plugin.engine.enable_safe_checkpoint_loading(allow_globals='
    "['module.Name']), or in a config custom_hooks=[dict(type="
    "'CheckpointLoadingHook', allow_globals=['module.Name'])]. If you trust "
    'this file, load it with full unpickling: pass --allow-unsafe-checkpoint '
    'to tools/train.py or tools/test.py, or call safe_torch_load(path, '
    'allow_unsafe=True) / mdrl_plugin.engine.enable_safe_checkpoint_loading('
    'allow_unsafe=True). Never do this for files from an untrusted source: '
    'unpickling can run arbitrary code.')


class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be read (truncated, not a checkpoint...)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"Could not load checkpoint '{path}': {reason}")


class UnsafeCheckpointError(CheckpointLoadError):
    """A checkpoint holds pickled globals (``offending``) not allowed."""

    def __init__(self, path: str, offending: List[str], detail: str = ''):
        what = (f'the pickled global(s) {", ".join(offending)}, which the '
                'safe loader does not allow (a pickled callable or class can '
                'run code while it is loaded)' if offending else
                'objects the safe loader could not verify '
                f'({(detail.strip().splitlines() or ["?"])[-1]})')
        RuntimeError.__init__(self, f"Refusing to load checkpoint '{path}': "
                              f'it contains {what}. {_HINT}')
        self.path, self.offending, self.reason = path, offending, str(self)


def _getattr(obj: Any, name: str, *default: Any) -> Any:
    if (obj is HistoryBuffer and not default and isinstance(name, str)
            and name in ('min', 'max', 'mean', 'current')):
        return getattr(obj, name)
    what = (f'{obj.__module__}.{obj.__qualname__}' if isinstance(obj, type)
            else f'<{type(obj).__qualname__} object>')
    # torch rewraps only UnpicklingError: safe_torch_load adds the path
    raise UnsafeCheckpointError('', [f'builtins.getattr({what}, {name!r})'])


#: ``(object, 'module.name')`` pairs allowed on top of torch's defaults;
#: numpy's array and scalar picklers under numpy 1's and numpy 2's names.
ALLOWED_CHECKPOINT_GLOBALS: List[Tuple[Any, str]] = [
    (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
    (np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype'),
    (_getattr, 'builtins.getattr')] + [
    (func, f'{package}.multiarray.{func.__name__}')
    for package in ('numpy.core', 'numpy._core')
    for func in (np.ndarray.__reduce__(np.zeros(0))[0],
                 np.float64(0).__reduce__()[0])] + [
    (cls, f'numpy.dtypes.{name}') for name, cls in vars(np.dtypes).items()
    if isinstance(cls, type) and issubclass(cls, np.dtype)]


def check_torch_file(path: str) -> None:
    """Raise :class:`CheckpointLoadError` unless ``path`` starts like a
    ``torch.save`` file (zip or pickle)."""
    with open(path, 'rb') as f:
        head = f.read(8)
    if not head.startswith((b'PK\x03\x04', b'\x80')):
        raise CheckpointLoadError(
            path, 'it is not a PyTorch checkpoint (a file written by '
            'torch.save is a zip archive or a pickle; this one '
            f"{f'starts with {head!r}' if head else 'is empty'}). Check the "
            'path: it should name a .pth file written by training.')


def _options() -> Dict[str, Any]:
    """Settings of the enabled safe MMEngine loader, else ``{}``."""
    # MMEngine has no public getter for a registered loader
    return getattr(CheckpointLoader._schemes.get(''), 'safe_options', {})


def safe_torch_load(path: str, map_location: Any = 'cpu',
                    allow_unsafe: bool = False) -> Any:
    """Load a ``torch.save`` or ``.safetensors`` file without running code:
    :class:`UnsafeCheckpointError` for a global outside the allow-list (and
    :func:`enable_safe_checkpoint_loading`'s additions).

    Args:
        path: The file.
        map_location: As in :func:`torch.load`.
        allow_unsafe: Full unpickling (trusted files only).
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"Checkpoint file '{path}' does not exist or is not a file.")
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location) if isinstance(
                map_location, (str, torch.device)) else 'cpu')
        except Exception as e:
            raise CheckpointLoadError(
                path, f'not a valid safetensors file ({e})') from e
    check_torch_file(path)
    unsafe = allow_unsafe or _options().get('allow_unsafe', False)
    allowed = ALLOWED_CHECKPOINT_GLOBALS + list(_options().get('extra', ()))
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location, weights_only=not unsafe)
    except UnsafeCheckpointError as e:  # from _getattr
        raise UnsafeCheckpointError(path, e.offending) from None
    except pickle.UnpicklingError as e:
        if unsafe:
            raise CheckpointLoadError(path, str(e)) from e
        names = [full.rpartition('.') for full in re.findall(
            r'GLOBAL (\S+)', str(e))]  # protocol 2 names -> Python 3's
        raise UnsafeCheckpointError(path, ['.'.join(NAME_MAPPING.get(
            (m, n), (IMPORT_MAPPING.get(m, m), n))) for m, _, n in names],
            str(e)) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointLoadError(
            path, f'{e} (the file may be truncated or is not a PyTorch '
            'checkpoint)') from e


def enable_safe_checkpoint_loading(allow_globals: Iterable[Any] = (),
                                   allow_unsafe: bool = False) -> None:
    """Make :func:`safe_torch_load` MMEngine's loader for local paths.

    Safe, not strict (``CheckpointLoadingHook`` is both). Calls add up;
    :func:`disable_safe_checkpoint_loading` undoes them.

    Args:
        allow_globals: Trusted classes/functions (or ``'module.Name'``).
        allow_unsafe: Full unpickling for every local checkpoint.
    """
    extra = list(_options().get('extra', ()))
    for item in allow_globals:
        obj = get_object_from_string(item) if isinstance(item, str) else item
        if obj is None:
            raise ValueError(
                f'allow_globals: cannot import {item!r}; give the full '
                "'module.Name' of a class or function you trust.")
        extra += [obj] if obj not in extra else []
    allow_unsafe = allow_unsafe or _options().get('allow_unsafe', False)
    if allow_unsafe:
        print_log('Unsafe checkpoint loading is ON: checkpoints are '
                  'unpickled without restrictions. Only load files you trust.',
                  logger='current', level=logging.WARNING)

    def load_from_local_safe(filename: str, map_location: Any) -> Any:
        return safe_torch_load(filename, map_location)
    load_from_local_safe.safe_options = dict(extra=extra,
                                             allow_unsafe=allow_unsafe)
    CheckpointLoader.register_scheme('', load_from_local_safe, force=True)


def disable_safe_checkpoint_loading() -> None:
    """Give MMEngine its own local loader back."""
    if _options():
        CheckpointLoader.register_scheme('', load_from_local, force=True)


def safe_checkpoint_loading_enabled() -> bool:
    """Whether :func:`enable_safe_checkpoint_loading` is in effect."""
    return bool(_options())


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` zip (not cut by a kill)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith('data.pkl') for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


class CheckpointMismatchError(ValueError, RuntimeError):
    """A checkpoint does not fit the model (``RuntimeError``: as MMEngine's).

    ``report`` is PyTorch's own list of the missing, unexpected and
    wrong-shaped keys (``Module.load_state_dict(strict=True)``).
    """

    def __init__(self, filename: str, report: str,
                 config: Optional[str] = None) -> None:
        self.filename, self.report = filename, report
        super().__init__(
            f'Checkpoint {filename!r} does not fit the model'
            f'{f" of config {config!r}" if config else ""}. It was most '
            'likely written for another config (another model, width or '
            'number of identities): use the config it was trained with. To '
            'load only the weights that fit and keep the others at their '
            'initialisation, pass --allow-partial-checkpoint (tools) or '
            f'allow_partial=True. {report}')


def load_state_dict_checked(model: torch.nn.Module,
                            state_dict: Dict[str, Any], filename: str,
                            allow_partial: bool = False,
                            logger: Any = 'current',
                            config: Optional[str] = None) -> None:
    """Load ``state_dict`` (``module.`` prefixes stripped) into ``model``.

    Strict: PyTorch's ``load_state_dict(strict=True)``, on every rank; its
    report becomes a :class:`CheckpointMismatchError` naming ``filename`` and
    ``config`` (the model may then hold the weights that fitted: do not use
    it). ``allow_partial``: MMEngine's ``load_state_dict``, which loads what
    fits and logs the rest to ``logger``.
    """
    model = model.module if is_model_wrapper(model) else model
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = OrderedDict((re.sub(r'^module\.', '', k), v)
                             for k, v in state_dict.items())
    if metadata is not None:  # per-module versions (e.g. BatchNorm's)
        state_dict._metadata = metadata
    if allow_partial:
        load_state_dict(model, state_dict, strict=False, logger=logger)
        return
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(filename, str(e), config) from None


def load_model_weights(model: torch.nn.Module, filename: str, *,
                       allow_partial: bool = False, map_location: Any = 'cpu',
                       logger: Any = 'current',
                       config: Optional[str] = None) -> dict:
    """Load a checkpoint (local: :func:`safe_torch_load`; URI: MMEngine) into
    ``model`` with :func:`load_state_dict_checked` (the other arguments'
    doc). Returns the checkpoint."""
    filename = os.fspath(filename)
    checkpoint = (CheckpointLoader.load_checkpoint(filename, map_location,
                                                   logger)
                  if '://' in filename else
                  safe_torch_load(filename, map_location))
    if not isinstance(checkpoint, dict):
        raise CheckpointLoadError(filename, 'expected a dict of weights, got '
                                  f'{type(checkpoint).__name__}')
    load_state_dict_checked(model, checkpoint.get('state_dict', checkpoint),
                            filename, allow_partial, logger, config)
    return checkpoint

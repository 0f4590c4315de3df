"""Config helpers used by ``tools/train.py`` and ``tools/test.py``.

The command-line options themselves live in ``tools/_common.py``.
"""
import logging
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from .checkpoint import find_resumable_checkpoint

__all__ = [
    'load_config', 'enable_amp', 'apply_resume', 'default_work_dir',
    'prepare_determinism'
]

_PLAIN_WRAPPERS = ('OptimWrapper', 'mmengine.OptimWrapper', 'AmpOptimWrapper',
                   'mmengine.AmpOptimWrapper')
_OURS = ('MixedPrecisionOptimWrapper',
         'mdrl_plugin.MixedPrecisionOptimWrapper')


def load_config(path: str) -> Config:
    """Read a config file with a clear error for a bad path.

    Args:
        path: A ``.py``/``.json``/``.yaml`` MMEngine config.

    Returns:
        The config.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
        ValueError: ``path`` has an unsupported extension.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f"Config file '{path}' does not exist or is not a file.")
    if osp.splitext(path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        raise ValueError(f"Config file '{path}' must be a .py, .json or .yaml "
                         'MMEngine config.')
    return Config.fromfile(path)


def default_work_dir(config_path: str) -> str:
    """``work_dirs/<config name without extension>``.

    Args:
        config_path: The config file.

    Returns:
        The default work dir (relative to the current directory).
    """
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def enable_amp(cfg: Config) -> Config:
    """Switch the optimizer wrapper to :class:`MixedPrecisionOptimWrapper`.

    ``OptimWrapper`` and MMEngine's ``AmpOptimWrapper`` (which needs a GPU in
    MMEngine 0.10.7) are replaced, keeping their arguments; the wrapper then
    uses fp16 + loss scaling on CUDA and bf16 on CPU.

    Args:
        cfg: The config (modified in place).

    Returns:
        The same config.

    Raises:
        ValueError: No ``optim_wrapper``, or a wrapper type that cannot be
            switched (e.g. an ``OptimWrapperDict`` of several optimizers).
    """
    optim_wrapper = cfg.get('optim_wrapper', None)
    if optim_wrapper is None:
        raise ValueError('--amp needs an `optim_wrapper` in the config.')
    wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type in _OURS:
        print_log('Mixed precision is already enabled in the config.',
                  logger='current', level=logging.WARNING)
        return cfg
    if wrapper_type not in _PLAIN_WRAPPERS:
        raise ValueError(
            '--amp switches `optim_wrapper.type` from OptimWrapper or '
            'AmpOptimWrapper to MixedPrecisionOptimWrapper, but the config '
            f'uses {wrapper_type!r}.')
    if optim_wrapper.pop('use_fsdp', False):
        raise ValueError('--amp: MixedPrecisionOptimWrapper does not support '
                         'use_fsdp=True.')
    optim_wrapper['type'] = 'mdrl_plugin.MixedPrecisionOptimWrapper'
    optim_wrapper.setdefault('loss_scale', 'dynamic')
    return cfg


def apply_resume(cfg: Config, resume: Optional[str]) -> Config:
    """Set ``cfg.resume``/``cfg.load_from`` for the ``--resume`` flag.

    ``resume='auto'`` (``--resume`` without a path) resumes from the newest
    complete checkpoint of ``cfg.work_dir`` (see
    :func:`find_resumable_checkpoint`, robust to a kill during a save); when
    there is none, training starts afresh (keeping the config's
    ``load_from`` initialisation). A path resumes from that file.

    Args:
        cfg: The config with ``work_dir`` set (modified in place).
        resume: ``None`` (no resume), ``'auto'`` or a checkpoint path.

    Returns:
        The same config.

    Raises:
        FileNotFoundError: An explicit local checkpoint path does not exist.
    """
    if resume is None:
        return cfg
    if resume == 'auto':
        found = find_resumable_checkpoint(cfg.work_dir)
        if found is None:
            print_log(
                f"--resume: no checkpoint in '{cfg.work_dir}', training from "
                'the start.', logger='current', level=logging.WARNING)
            cfg.resume = False
        else:
            cfg.resume = True
            cfg.load_from = found
        return cfg
    if '://' not in resume and not osp.isfile(os.path.expanduser(resume)):
        raise FileNotFoundError(
            f"--resume: checkpoint file '{resume}' does not exist.")
    cfg.resume = True
    cfg.load_from = resume
    return cfg


def prepare_determinism(cfg: Config) -> Config:
    """Set what ``randomness.deterministic=True`` needs before CUDA starts.

    MMEngine then calls ``torch.use_deterministic_algorithms(True)``, with
    which cuBLAS matrix products raise an error on GPUs unless
    ``CUBLAS_WORKSPACE_CONFIG`` is set before the first cuBLAS call. This sets
    it to ``':4096:8'`` when it is not set already.

    Args:
        cfg: The config.

    Returns:
        The same config.
    """
    randomness = cfg.get('randomness', None) or {}
    if randomness.get('deterministic', False):
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    return cfg

"""Distributed set-up with a CPU (gloo) fallback.

MMEngine's launchers call ``torch.cuda.set_device`` and so fail on machines
without CUDA, and its default model wrapper passes ``device_ids=[LOCAL_RANK]``
to ``DistributedDataParallel``, which a CPU module rejects. Without CUDA,
:func:`setup_distributed` initialises a ``gloo`` process group itself (the
Runner then skips its own ``init_dist``) and :func:`adapt_cfg_for_device`
makes the model wrapper use ``device_ids=None``. With CUDA both leave
everything to MMEngine (``env_cfg.dist_cfg``).
"""
import logging
import os
import subprocess
from datetime import timedelta
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

__all__ = [
    'LAUNCHERS', 'setup_distributed', 'teardown_distributed',
    'adapt_cfg_for_device'
]

#: Launchers the tools accept.
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')


def _require_env(launcher: str, names) -> None:
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables '
            f'{", ".join(missing)}, which are not set. Start the job with '
            'tools/dist_train.sh / tools/dist_test.sh (torchrun) or '
            'tools/slurm_train.sh / tools/slurm_test.sh (srun).')


def _env_from_slurm() -> None:
    _require_env('slurm', ['SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'])
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        addr = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1').strip()
        os.environ['MASTER_ADDR'] = addr or '127.0.0.1'


def _env_from_mpi() -> None:
    _require_env('mpi', ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
                         'MASTER_ADDR'])
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ.setdefault('LOCAL_RANK',
                          os.environ.get('OMPI_COMM_WORLD_LOCAL_RANK', '0'))
    os.environ.setdefault('MASTER_PORT', '29500')


def setup_distributed(launcher: str,
                      backend: str = 'gloo',
                      timeout_s: Optional[int] = 1800) -> bool:
    """Initialise the process group on CPU-only machines.

    Args:
        launcher: ``'none'``, ``'pytorch'`` (torchrun), ``'slurm'`` or
            ``'mpi'``.
        backend: Backend of the CPU process group.
        timeout_s: Collective timeout in seconds (``None``: torch default).

    Returns:
        ``True`` when this call initialised a process group; ``False`` when
        nothing was needed (``launcher='none'``, already initialised) or the
        job is left to MMEngine because CUDA is available.

    Raises:
        ValueError: Unknown launcher.
        RuntimeError: The launcher's environment variables are missing.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f'Unknown launcher {launcher!r}; expected one of {LAUNCHERS}')
    if launcher == 'none' or torch_dist.is_initialized():
        return False
    if torch.cuda.is_available():
        return False  # MMEngine's init_dist handles GPUs
    if launcher == 'slurm':
        _env_from_slurm()
    elif launcher == 'mpi':
        _env_from_mpi()
    _require_env(launcher, ['RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                            'MASTER_PORT'])
    kwargs = {}
    if timeout_s is not None:
        kwargs['timeout'] = timedelta(seconds=timeout_s)
    torch_dist.init_process_group(
        backend=backend,
        init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    print_log(
        f'CUDA is not available: initialised a {backend} process group '
        f'(rank {torch_dist.get_rank()} of {torch_dist.get_world_size()}).',
        logger='current', level=logging.INFO)
    return True


def teardown_distributed(barrier: bool = True) -> None:
    """Destroy the default process group, if any.

    A process that exits with a live gloo group can abort during interpreter
    shutdown ("terminate called without an active exception"); the tools call
    this when they finish.

    Args:
        barrier: Wait for all ranks first (skip it after an error, when other
            ranks may be gone).
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            if barrier:
                torch_dist.barrier()
        finally:
            torch_dist.destroy_process_group()


def adapt_cfg_for_device(cfg: Config, launcher: str) -> Config:
    """Make a distributed config work on CPU-only machines.

    Without CUDA and with a launcher, the model wrapper becomes
    ``MMDistributedDataParallel`` with ``device_ids=None`` (keeping
    ``find_unused_parameters`` and any wrapper options already set) and the
    ``dist_cfg`` backend ``gloo``. Otherwise ``cfg`` is unchanged.

    Args:
        cfg: The config (modified in place).
        launcher: The launcher.

    Returns:
        The same config.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    wrapper = cfg.get('model_wrapper_cfg', None)
    if wrapper is None:
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    env_cfg = cfg.get('env_cfg', None)
    if env_cfg is None:
        cfg.env_cfg = dict(dist_cfg=dict(backend='gloo'))
    else:
        env_cfg.setdefault('dist_cfg', dict())
        env_cfg['dist_cfg']['backend'] = 'gloo'
    return cfg

"""Distributed set-up with a CPU (gloo) fallback.

MMEngine's launchers call ``torch.cuda.set_device`` and its default wrapper
passes ``device_ids=[LOCAL_RANK]``; both fail without CUDA. There,
:func:`setup_distributed` starts a ``gloo`` group itself (the Runner then
skips ``init_dist``) and :func:`adapt_cfg_for_device` sets
``device_ids=None``. With CUDA both leave everything to MMEngine.
"""
import logging
import os
import subprocess
from datetime import timedelta

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

#: Launchers the tools accept.
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')

#: launcher: (rank, world size, local rank) variables it sets.
_LAUNCHER_ENV = dict(
    slurm=('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'),
    mpi=('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
         'OMPI_COMM_WORLD_LOCAL_RANK'))


def _require_env(launcher: str, names) -> None:
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables '
            f'{", ".join(missing)}, which are not set. Start the job with '
            'tools/dist_train.sh / tools/dist_test.sh (torchrun) or '
            'tools/slurm_train.sh / tools/slurm_test.sh (srun).')


def _env_from_launcher(launcher: str) -> None:
    """``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_*`` for srun/mpirun
    (the launcher's local rank wins over a ``LOCAL_RANK`` already set)."""
    rank, size, local = _LAUNCHER_ENV[launcher]
    env = os.environ
    _require_env(launcher, [rank, size] + (
        ['SLURM_NODELIST'] if launcher == 'slurm' else ['MASTER_ADDR']))
    env['RANK'], env['WORLD_SIZE'] = env[rank], env[size]
    env['LOCAL_RANK'] = env.get(local, env.get('LOCAL_RANK', '0'))
    env.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in env:  # slurm: the first node of the job
        env['MASTER_ADDR'] = subprocess.getoutput(
            f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1"
        ).strip() or '127.0.0.1'


def setup_distributed(launcher: str, backend: str = 'gloo',
                      timeout_s: int = 1800) -> bool:
    """Start a CPU process group (with CUDA, MMEngine does it).

    Args:
        launcher: One of :data:`LAUNCHERS`.
        backend: Backend of the CPU process group.
        timeout_s: Collective timeout in seconds.

    Returns:
        Whether this call started a process group.

    Raises:
        ValueError: Unknown launcher.
        RuntimeError: The launcher's environment variables are missing.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f'Unknown launcher {launcher!r}; expected one of {LAUNCHERS}')
    if launcher == 'none' or torch_dist.is_initialized() or \
            torch.cuda.is_available():
        return False
    if launcher in _LAUNCHER_ENV:
        _env_from_launcher(launcher)
    _require_env(launcher,
                 ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'])
    torch_dist.init_process_group(
        backend=backend, init_method='env://',
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        timeout=timedelta(seconds=timeout_s))
    print_log(
        f'CUDA is not available: initialised a {backend} process group '
        f'(rank {torch_dist.get_rank()} of {torch_dist.get_world_size()}).',
        logger='current', level=logging.INFO)
    return True


def teardown_distributed(barrier: bool = True) -> None:
    """Destroy the process group, if any (a live gloo group can abort the
    interpreter's exit).

    Args:
        barrier: Wait for all ranks first (not after an error).
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        try:
            if barrier:
                torch_dist.barrier()
        finally:
            torch_dist.destroy_process_group()


def adapt_cfg_for_device(cfg: Config, launcher: str) -> Config:
    """Without CUDA and with a launcher: ``device_ids=None`` in the model
    wrapper (``MMDistributedDataParallel`` unless set) and ``gloo``.

    Args:
        cfg: The config (modified in place).
        launcher: The launcher.

    Returns:
        The same config.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return cfg
    cfg.model_wrapper_cfg = dict(
        cfg.get('model_wrapper_cfg', None) or dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False)),
        device_ids=None)
    cfg.env_cfg = cfg.get('env_cfg', None) or {}
    cfg.env_cfg.dist_cfg = dict(cfg.env_cfg.get('dist_cfg', {}),
                                backend='gloo')
    return cfg

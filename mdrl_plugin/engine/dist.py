"""Distributed runs without CUDA (MMEngine's launchers call
``torch.cuda.set_device``; its wrapper passes ``device_ids=[LOCAL_RANK]``)."""
import os
import subprocess

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

#: Launchers the tools accept.
LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')

#: launcher: its (rank, world size, local rank) variables.
_LAUNCHER_ENV = dict(
    slurm=('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'),
    mpi=('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
         'OMPI_COMM_WORLD_LOCAL_RANK'))


def _require_env(launcher: str, names) -> None:
    if missing := [n for n in names if n not in os.environ]:
        raise RuntimeError(
            f'--launcher {launcher} needs the environment variables '
            f'{", ".join(missing)}, which are not set. Start the job with '
            'tools/dist_train.sh / tools/dist_test.sh (torchrun) or '
            'tools/slurm_train.sh / tools/slurm_test.sh (srun).')


def setup_distributed(launcher: str) -> bool:
    """Without CUDA, start a gloo process group (so the Runner skips
    ``init_dist``); with CUDA, leave it to MMEngine (nccl).

    Args:
        launcher: One of :data:`LAUNCHERS`; under srun/mpirun, ``RANK``,
            ``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_*`` come from theirs.

    Returns:
        Whether this call started a process group.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f'Unknown launcher {launcher!r}; expected one of {LAUNCHERS}')
    if launcher == 'none' or torch.cuda.is_available() or \
            torch_dist.is_initialized():
        return False
    env = os.environ
    if launcher in _LAUNCHER_ENV:
        rank, size, local = _LAUNCHER_ENV[launcher]
        _require_env(launcher, [rank, size] + (
            ['SLURM_NODELIST'] if launcher == 'slurm' else ['MASTER_ADDR']))
        env['RANK'], env['WORLD_SIZE'] = env[rank], env[size]
        env['LOCAL_RANK'] = env.get(local, env.get('LOCAL_RANK', '0'))
        env.setdefault('MASTER_PORT', '29500')
        if 'MASTER_ADDR' not in env:  # slurm: the job's first node
            env['MASTER_ADDR'] = subprocess.getoutput(
                f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1"
            ).strip() or '127.0.0.1'
    _require_env(launcher,
                 ['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'])
    torch_dist.init_process_group('gloo')  # env://: RANK, WORLD_SIZE, MASTER_*
    print_log('CUDA is not available: initialised a gloo process group (rank '
              f'{torch_dist.get_rank()} of {torch_dist.get_world_size()}).',
              logger='current')
    return True


def adapt_cfg_for_device(cfg: Config, launcher: str) -> Config:
    """Without CUDA and with a launcher, set ``device_ids=None`` in the model
    wrapper and ``gloo`` in ``cfg`` (in place); return ``cfg``."""
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

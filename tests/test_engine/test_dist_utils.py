"""CPU fallback of the distributed set-up."""
import socket

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mdrl_plugin.engine import adapt_cfg_for_device, setup_distributed

cpu_only = pytest.mark.skipif(torch.cuda.is_available(),
                              reason='tests the CPU fallback')

DIST_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT',
            'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST', 'SLURM_LOCALID',
            'OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE',
            'OMPI_COMM_WORLD_LOCAL_RANK')


@pytest.fixture
def clean_env(monkeypatch):
    for name in DIST_ENV:
        monkeypatch.delenv(name, raising=False)  # restored afterwards
    yield monkeypatch
    if dist.is_initialized():
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def test_no_launcher_does_nothing(clean_env):
    assert setup_distributed('none') is False
    assert not dist.is_initialized()


def test_unknown_launcher(clean_env):
    with pytest.raises(ValueError) as info:
        setup_distributed('horovod')
    assert str(info.value) == ("Unknown launcher 'horovod'; expected one of "
                               "('none', 'pytorch', 'slurm', 'mpi')")


@cpu_only
def test_missing_torchrun_environment(clean_env):
    clean_env.setenv('RANK', '0')
    with pytest.raises(RuntimeError) as info:
        setup_distributed('pytorch')
    assert str(info.value) == (
        '--launcher pytorch needs the environment variables WORLD_SIZE, '
        'MASTER_ADDR, MASTER_PORT, which are not set. Start the job with '
        'tools/dist_train.sh / tools/dist_test.sh (torchrun) or '
        'tools/slurm_train.sh / tools/slurm_test.sh (srun).')
    assert not dist.is_initialized()


@cpu_only
def test_pytorch_launcher_initialises_gloo(clean_env):
    clean_env.setenv('RANK', '0')
    clean_env.setenv('WORLD_SIZE', '1')
    clean_env.setenv('MASTER_ADDR', '127.0.0.1')
    clean_env.setenv('MASTER_PORT', _free_port())
    assert setup_distributed('pytorch') is True
    assert dist.is_initialized()
    assert dist.get_backend() == 'gloo'
    assert dist.get_world_size() == 1
    # a second call finds the group and does nothing
    assert setup_distributed('pytorch') is False


@cpu_only
def test_slurm_launcher_reads_the_slurm_environment(clean_env):
    clean_env.setenv('SLURM_PROCID', '0')
    clean_env.setenv('SLURM_NTASKS', '1')
    clean_env.setenv('SLURM_NODELIST', 'node-[1-2]')
    clean_env.setenv('MASTER_ADDR', '127.0.0.1')
    clean_env.setenv('MASTER_PORT', _free_port())
    assert setup_distributed('slurm') is True
    import os
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'],
            os.environ['LOCAL_RANK']) == ('0', '1', '0')
    assert dist.get_rank() == 0


@cpu_only
@pytest.mark.parametrize('launcher, env', [
    ('slurm', dict(SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_LOCALID='3',
                   SLURM_NODELIST='node-1', MASTER_ADDR='127.0.0.1')),
    ('mpi', dict(OMPI_COMM_WORLD_RANK='0', OMPI_COMM_WORLD_SIZE='1',
                 OMPI_COMM_WORLD_LOCAL_RANK='3', MASTER_ADDR='127.0.0.1')),
])
def test_local_rank_comes_from_the_launcher(clean_env, launcher, env):
    """The tools export LOCAL_RANK=0 (from --local_rank) before the set-up;
    srun's / mpirun's local rank must win, or every CPU rank of a node
    believes it is local rank 0."""
    import os
    for name, value in env.items():
        clean_env.setenv(name, value)
    clean_env.setenv('MASTER_PORT', _free_port())
    clean_env.setenv('LOCAL_RANK', '0')
    assert setup_distributed(launcher) is True
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'],
            os.environ['LOCAL_RANK']) == ('0', '1', '3')


def test_adapt_cfg_leaves_non_distributed_configs_alone():
    cfg = Config(dict(find_unused_parameters=True))
    adapt_cfg_for_device(cfg, 'none')
    assert 'model_wrapper_cfg' not in cfg


@cpu_only
def test_adapt_cfg_on_cpu():
    cfg = Config(dict(find_unused_parameters=True,
                      env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    adapt_cfg_for_device(cfg, 'pytorch')
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=True, device_ids=None)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    # a wrapper set by the user keeps its options
    cfg = Config(dict(model_wrapper_cfg=dict(
        type='MMDistributedDataParallel', device_ids=[0],
        static_graph=True)))
    adapt_cfg_for_device(cfg, 'slurm')
    assert cfg.model_wrapper_cfg == dict(
        type='MMDistributedDataParallel', device_ids=None, static_graph=True)
    assert cfg.env_cfg == dict(dist_cfg=dict(backend='gloo'))

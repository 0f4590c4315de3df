"""Helpers shared by the engine and tool tests (toy configs, toy runs)."""
import contextlib
import copy
import importlib.util
import os
import os.path as osp
import random
import uuid

import numpy as np
import torch

# deterministic cuBLAS (MMEngine's `deterministic=True` on a GPU needs it)
os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')

TOY_DIR = osp.dirname(osp.abspath(__file__))
#: The toy iteration-based config (IterBasedTrainLoop, checkpoints every 2).
TOY_ITER_CONFIG = osp.join(TOY_DIR, 'configs', 'toy_iter.py')
_TOOLS = {}


def load_tool(name: str):
    """``tools/<name>.py`` as a module (loaded once)."""
    if name not in _TOOLS:
        spec = importlib.util.spec_from_file_location(
            f'mdrl_tool_{name}',
            osp.join(osp.dirname(osp.dirname(TOY_DIR)), 'tools', f'{name}.py'))
        _TOOLS[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_TOOLS[name])
    return _TOOLS[name]


@contextlib.contextmanager
def preserved_global_state():
    """Undo what MMEngine's Runner and the engine switches change globally.

    The Runner seeds every RNG and turns ``torch.use_deterministic_algorithms``
    on; the engine's switches live in MMEngine's local checkpoint loader (a
    run that fails leaves ``CheckpointLoadingHook``'s loader in place).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    local_loader = CheckpointLoader._schemes['']
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.deterministic = cudnn[0]
        torch.backends.cudnn.benchmark = cudnn[1]
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        CheckpointLoader._schemes[''] = local_loader


def make_toy_cfg(work_dir: str, **overrides):
    """A fresh copy of the toy config with a unique experiment name.

    Args:
        work_dir: The run's work dir.
        **overrides: Dotted keys whose values replace the config's (a dict
            replaces the whole entry, it is not merged).

    Returns:
        The config.
    """
    from mmengine.config import Config

    import toy_components  # noqa: F401  (registers the toy classes)
    cfg = copy.deepcopy(Config.fromfile(TOY_ITER_CONFIG))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'toy_{uuid.uuid4().hex}'
    cfg.default_hooks.logger.interval = 1000
    for key, value in overrides.items():
        *parents, leaf = key.split('.')
        node = cfg
        for name in parents:
            node = node[name]
        node[leaf] = value
    return cfg


def run_toy(cfg):
    """Build a Runner from ``cfg`` and train it.

    A simulated death (``toy_components.ToyInterrupt``) is swallowed.

    Args:
        cfg: The config.

    Returns:
        The runner.
    """
    from mmengine.runner import Runner

    from toy_components import ToyInterrupt
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    except ToyInterrupt:
        pass
    return runner


def state_dicts_equal(a: dict, b: dict) -> bool:
    """Whether two state dicts hold bitwise-equal tensors under equal keys."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

"""Engine test fixtures: the toy components and a clean global state."""
import os.path as osp
import sys

import pytest

TOY_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                   'test_tools')
if TOY_DIR not in sys.path:
    sys.path.insert(0, TOY_DIR)

from toy_helpers import make_toy_cfg, preserved_global_state, run_toy  # noqa


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Each test runs as the tools do: with the safe checkpoint loader on
    (torch >= 2.6 cannot read MMEngine checkpoints without it); the loader
    and the other global switches are put back as found afterwards (which
    tests/conftest.py checks)."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from mdrl_plugin.engine import enable_safe_checkpoint_loading
    found = CheckpointLoader._schemes['']  # no public getter
    enable_safe_checkpoint_loading()
    try:
        with preserved_global_state():
            yield
    finally:
        CheckpointLoader.register_scheme('', found, force=True)


@pytest.fixture(scope='session')
def mmengine_checkpoint(tmp_path_factory) -> str:
    """A real MMEngine checkpoint (toy run, 2 iterations, message hub)."""
    work_dir = tmp_path_factory.mktemp('toy_ckpt')
    with preserved_global_state():
        run_toy(make_toy_cfg(work_dir, **{'train_cfg.max_iters': 2}))
    return str(work_dir / 'iter_2.pth')

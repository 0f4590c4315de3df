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
    and the other global switches are restored afterwards."""
    from mdrl_plugin.engine import (disable_safe_checkpoint_loading,
                                    enable_safe_checkpoint_loading,
                                    safe_checkpoint_loading_enabled)
    was_safe = safe_checkpoint_loading_enabled()
    enable_safe_checkpoint_loading()
    with preserved_global_state():
        yield
    if not was_safe:
        disable_safe_checkpoint_loading()


@pytest.fixture(scope='session')
def mmengine_checkpoint(tmp_path_factory) -> str:
    """A real MMEngine checkpoint (toy run, 2 iterations, message hub)."""
    work_dir = tmp_path_factory.mktemp('toy_ckpt')
    with preserved_global_state():
        run_toy(make_toy_cfg(work_dir, **{'train_cfg.max_iters': 2}))
    return str(work_dir / 'iter_2.pth')

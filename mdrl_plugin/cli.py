"""Console entry points ``mdrl-train``, ``mdrl-test``, ``mdrl-fetch-weights``:
the tool of the same name with the same arguments, from any folder; a config
may be a shipped config's name (``mdrl-train mdrl_demo.py``). A wheel carries
configs and tools in ``mdrl_plugin/.mim/``, where ``mim`` looks for them."""
import os.path as osp
import runpy
import sys
from typing import List, Optional

__all__ = ['shipped_root', 'find_config', 'train', 'test', 'fetch_weights']


def shipped_root() -> str:
    """The folder of the shipped ``configs/`` and ``tools/``:
    ``mdrl_plugin/.mim`` in an installed wheel, else the source checkout."""
    package = osp.dirname(osp.abspath(__file__))
    mim = osp.join(package, '.mim')
    return mim if osp.isdir(mim) else osp.dirname(package)


def find_config(name: str) -> str:
    """``name`` if it exists, else the shipped ``configs/<name>`` if that
    exists, else ``name`` (for the tool to report).

    Args:
        name: A path, or a path below ``configs/`` (``'mdrl_demo.py'``).

    Returns:
        The config path.
    """
    shipped = osp.join(shipped_root(), 'configs', name)
    return shipped if not osp.exists(name) and osp.isfile(shipped) else name


def _run_tool(name: str, argv: Optional[List[str]]) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    args = [find_config(a) if a.endswith('.py') else a for a in args]
    script = osp.join(shipped_root(), 'tools', f'{name}.py')
    saved = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name='__main__')  # exits with the status
    finally:
        sys.argv = saved
    return 0


def train(argv: Optional[List[str]] = None) -> int:
    """``mdrl-train CONFIG [options]``: ``tools/train.py``."""
    return _run_tool('train', argv)


def test(argv: Optional[List[str]] = None) -> int:
    """``mdrl-test CONFIG CHECKPOINT [options]``: ``tools/test.py``."""
    return _run_tool('test', argv)


def fetch_weights(argv: Optional[List[str]] = None) -> int:
    """``mdrl-fetch-weights CONFIG [...]``: ``tools/fetch_weights.py``."""
    return _run_tool('fetch_weights', argv)

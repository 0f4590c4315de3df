"""A live ``tools/serve.py`` process for the server and browser tests."""
import os
import socket
import subprocess
import sys
import textwrap
import time
from typing import Iterator, List

from mdrl_test_utils import REPO_ROOT

#: Run first in a child process: any import of these packages raises.
BLOCKER = textwrap.dedent('''
    import importlib.abc, sys
    BLOCKED = ('torch', 'mmengine', 'mmcv', 'transformers', 'torchvision',
               'timm', 'mdrl_plugin')

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ImportError(f'{name} is blocked in this test')
            return None

    sys.meta_path.insert(0, Blocker())
''')

#: ``python -c SERVE_BLOCKED ARGS``: tools/serve.py ARGS with torch blocked.
SERVE_BLOCKED = BLOCKER + textwrap.dedent('''
    import runpy
    sys.argv = sys.argv[1:]  # [tools/serve.py, ARGS...]
    runpy.run_path(sys.argv[0], run_name='__main__')
''')


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_server(args: List[str], timeout: float = 300,
                 block_torch: bool = False) -> Iterator[str]:
    """Run ``tools/serve.py ARGS --port P`` and yield its base URL.

    Args:
        args: Arguments of tools/serve.py.
        timeout: Seconds to wait for ``/health``.
        block_torch: Run it where importing torch, MMEngine, transformers or
            ``mdrl_plugin`` raises (:data:`BLOCKER`).
    """
    import httpx
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    tool = os.path.join(REPO_ROOT, 'tools', 'serve.py')
    cmd = [sys.executable, '-c', SERVE_BLOCKED, tool] if block_torch else \
        [sys.executable, tool]
    proc = subprocess.Popen(
        [*cmd, *args, '--port', str(port), '--threads', '1'],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError('tools/serve.py exited: ' +
                                   proc.stdout.read()[-3000:])
            try:
                if httpx.get(url + '/health', timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError('tools/serve.py did not answer /health')
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

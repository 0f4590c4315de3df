"""A live ``tools/serve.py`` process for the server and browser tests."""
import os
import socket
import subprocess
import sys
import time
from typing import Iterator, List

from mdrl_test_utils import REPO_ROOT


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_server(args: List[str], timeout: float = 120) -> Iterator[str]:
    """Run ``tools/serve.py ARGS --port P`` and yield its base URL."""
    import httpx
    port = free_port()
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1')
    proc = subprocess.Popen(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'serve.py'), *args,
         '--port', str(port), '--threads', '1'],
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

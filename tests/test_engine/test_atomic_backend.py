"""The atomic local file backend used for checkpoints."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from mmengine.fileio import get_file_backend

from mdrl_plugin.engine.fileio import (
    TEMP_FILE_PATTERN,
    AtomicLocalBackend,
    atomic_write_bytes,
    remove_stale_temps,
    temp_path,
)

from mdrl_test_utils import fork
from toy_helpers import make_toy_cfg, run_toy

pytestmark = pytest.mark.slow  # a training process


def _entries(folder):
    return sorted(os.listdir(folder))


def test_selected_by_backend_args(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='local_atomic'))
    assert isinstance(backend, AtomicLocalBackend)


def test_put_and_put_text_write_whole_files(tmp_path):
    backend = AtomicLocalBackend()
    target = tmp_path / 'sub' / 'ckpt.pth'
    backend.put(b'first', target)
    assert target.read_bytes() == b'first'
    backend.put(b'second version', str(target))
    assert target.read_bytes() == b'second version'
    backend.put_text('h\u00e9llo\n', tmp_path / 'sub' / 'note.txt')
    assert (tmp_path / 'sub' / 'note.txt').read_text('utf-8') == 'h\u00e9llo\n'
    assert _entries(tmp_path / 'sub') == ['ckpt.pth', 'note.txt']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'ckpt.pth'
    target.write_bytes(b'old')

    def broken_fsync(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', broken_fsync)
    with pytest.raises(OSError, match='No space left'):
        atomic_write_bytes(b'new' * 1000, target)
    assert target.read_bytes() == b'old'
    assert _entries(tmp_path) == ['ckpt.pth']  # no temp file left


def test_sigkill_during_a_write_never_exposes_a_partial_file(tmp_path):
    target = tmp_path / 'iter_4.pth'
    target.write_bytes(b'old checkpoint')
    ready = tmp_path / 'ready'

    def slow_fsync(fd):  # a slow disk: the writer is killed mid-save
        ready.touch()
        time.sleep(60)

    def write():
        os.fsync = slow_fsync  # in the forked writer only
        atomic_write_bytes(b'x' * 5_000_000, str(target))

    proc = fork(write)
    try:
        deadline = time.time() + 300  # a loaded machine is slow
        while not ready.exists():
            assert proc.is_alive(), 'writer exited early'
            assert time.time() < deadline, 'writer never reached fsync'
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    assert target.read_bytes() == b'old checkpoint'
    temps = [n for n in _entries(tmp_path) if TEMP_FILE_PATTERN.match(n)]
    host = socket.gethostname().replace('.', '_')
    assert len(temps) == 1 and temps[0].startswith(
        f'.iter_4.pth.{host}.{proc.pid}.') and temps[0].endswith('.tmp')
    # the next write into the folder removes the dead writer's temp file
    atomic_write_bytes(b'new checkpoint', target)
    assert target.read_bytes() == b'new checkpoint'
    assert _entries(tmp_path) == ['iter_4.pth', 'ready']


def test_checkpoint_hook_saves_through_it(tmp_path, monkeypatch):
    saved = []
    original = AtomicLocalBackend.put

    def spy(self, obj, filepath):
        saved.append(os.path.basename(str(filepath)))
        return original(self, obj, filepath)

    monkeypatch.setattr(AtomicLocalBackend, 'put', spy)
    work = tmp_path / 'work'
    run_toy(make_toy_cfg(work, **{'train_cfg.max_iters': 4}))
    assert saved == ['iter_2.pth', 'iter_4.pth']
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_4.pth')


@pytest.mark.parametrize('errno_, reason', [
    (28, 'No space left on device'),
    (30, 'Read-only file system'),
])
def test_a_save_that_fails_halfway_keeps_the_last_checkpoint_resumable(
        tmp_path, monkeypatch, errno_, reason):
    """The disk fills up (or turns read-only) while iter_4.pth is written."""
    from mmengine.runner.checkpoint import find_latest_checkpoint

    from mdrl_plugin.engine import AtomicWriteError, fileio, safe_torch_load
    from mdrl_plugin.engine.checkpoint import is_complete_checkpoint

    from toy_helpers import state_dicts_equal
    full = run_toy(make_toy_cfg(tmp_path / 'full',
                                **{'train_cfg.max_iters': 6}))
    assert full.iter == 6

    real_atomic_write = fileio.atomic_write

    def write_half_then_fail(data, filepath):
        if os.path.basename(str(filepath)) != 'iter_4.pth':
            return real_atomic_write(filepath, lambda f: f.write(data))

        def half(f):
            f.write(data[:len(data) // 2])
            f.flush()
            raise OSError(errno_, reason)
        return real_atomic_write(filepath, half)

    monkeypatch.setattr(fileio, 'atomic_write_bytes', write_half_then_fail)
    work = tmp_path / 'cut'
    with pytest.raises(AtomicWriteError) as info:
        run_toy(make_toy_cfg(work, **{'train_cfg.max_iters': 6}))
    target = str(work / 'iter_4.pth')
    assert str(info.value) == (
        f"Could not write '{target}': {reason}. Nothing was replaced: the "
        'previous version of the file (for a checkpoint, the last complete '
        'one) is untouched and usable. Free disk space or choose a writable '
        '--work-dir, then continue with tools/train.py --resume.')
    assert info.value.errno == errno_
    # no partial iter_4.pth, no temp file; iter_2.pth whole and pointed to
    names = [n for n in _entries(work) if n.endswith('.pth') or
             TEMP_FILE_PATTERN.match(n)]
    assert names == ['iter_2.pth']
    assert is_complete_checkpoint(str(work / 'iter_2.pth'))
    assert safe_torch_load(str(work / 'iter_2.pth'))['meta']['iter'] == 2
    assert (work / 'last_checkpoint').read_text() == str(work / 'iter_2.pth')

    # space is back: --resume (MMEngine reads last_checkpoint) continues
    # from iter_2 and ends like `full`
    monkeypatch.undo()
    assert find_latest_checkpoint(str(work)) == str(work / 'iter_2.pth')
    cfg = make_toy_cfg(work, **{'train_cfg.max_iters': 6})
    cfg.resume, cfg.load_from = True, None
    run_toy(cfg)
    assert state_dicts_equal(
        safe_torch_load(str(tmp_path / 'full' / 'iter_6.pth'))['state_dict'],
        safe_torch_load(str(work / 'iter_6.pth'))['state_dict'])


def test_temp_path_names_host_and_pid(tmp_path):
    host = socket.gethostname().replace('.', '_')
    name = os.path.basename(temp_path(str(tmp_path / 'a.b.pth')))
    match = TEMP_FILE_PATTERN.match(name)
    assert name.startswith(f'.a.b.pth.{host}.{os.getpid()}.')
    assert (match['target'], match['host'], match['pid']) == (
        'a.b.pth', host, str(os.getpid()))
    assert temp_path(str(tmp_path / 'a')) != temp_path(str(tmp_path / 'a'))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_stale_temps_are_removed_by_host_and_age_only(tmp_path):
    """On a shared folder, another node's live temp entry survives even
    though its pid does not exist here (the old cleanup removed it)."""
    host = socket.gethostname().replace('.', '_')
    dead = _dead_pid()
    names = {
        'mine_dead': f'.ckpt.pth.{host}.{dead}.0123abcd.tmp',
        'mine_live': f'.ckpt.pth.{host}.{os.getpid()}.0123abcd.tmp',
        'other_node': f'.ckpt.pth.othernode.{dead}.0123abcd.tmp',
        'other_old': f'.ckpt.pth.othernode.{dead}.4567abcd.tmp',
        'old_part': f'.ckpt.pth.{dead}.0123abcd.part',
        'old_part_new': f'.ckpt.pth.{dead}.4567abcd.part',
        'folder_dead': f'.shards.{host}.{dead}.89abcdef.tmp',
        'plain': '.ckpt.pth.notatemp',
    }
    for key, name in names.items():
        if key.startswith('folder'):
            (tmp_path / name).mkdir()
            (tmp_path / name / 'shard.npy').write_bytes(b'x')
        else:
            (tmp_path / name).write_bytes(b'x')
    old = time.time() - 7 * 3600
    for key in ('other_old', 'old_part'):
        os.utime(tmp_path / names[key], (old, old))
    remove_stale_temps(str(tmp_path))
    assert _entries(tmp_path) == sorted(
        names[k] for k in ('mine_live', 'other_node', 'old_part_new',
                           'plain'))
    remove_stale_temps(str(tmp_path), max_age_s=0)  # everything is old now
    assert _entries(tmp_path) == [names['plain']]
    remove_stale_temps(str(tmp_path / 'missing'))  # no error


def test_a_real_full_disk_keeps_the_last_checkpoint_resumable(tmp_path):
    """The kernel refuses the writes of iter_4.pth (EFBIG from
    ``RLIMIT_FSIZE``, as a full disk would; running as root, ``chmod``
    cannot stand in for it)."""
    from mmengine.runner.checkpoint import find_latest_checkpoint

    from mdrl_plugin.engine import safe_torch_load

    from toy_helpers import TOY_DIR, state_dicts_equal
    work = tmp_path / 'cut'
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {TOY_DIR!r})
        from mmengine.hooks import Hook
        from mmengine.runner import Runner
        from toy_helpers import make_toy_cfg

        class DiskFullAfterIter2(Hook):
            def after_train_iter(self, runner, batch_idx, data_batch=None,
                                 outputs=None):
                if runner.iter + 1 == 2:  # after iter_2.pth was saved
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

        runner = Runner.from_cfg(make_toy_cfg({str(work)!r}, **{{
            'train_cfg.max_iters': 6}}))
        runner.register_hook(DiskFullAfterIter2(), 'LOWEST')
        runner.train()
    """)
    repo = os.path.dirname(os.path.dirname(TOY_DIR))
    proc = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True,
        timeout=600, env=dict(os.environ, PYTHONPATH=repo,
                              OMP_NUM_THREADS='1'))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (f"AtomicWriteError: Could not write '{work / 'iter_4.pth'}': "
            'File too large. Nothing was replaced') in proc.stderr
    assert [n for n in _entries(work) if n.endswith('.pth') or
            TEMP_FILE_PATTERN.match(n)] == ['iter_2.pth']
    assert find_latest_checkpoint(str(work)) == str(work / 'iter_2.pth')
    # space is back: resume and end like an uninterrupted run
    full = run_toy(make_toy_cfg(tmp_path / 'full',
                                **{'train_cfg.max_iters': 6}))
    assert full.iter == 6
    cfg = make_toy_cfg(work, **{'train_cfg.max_iters': 6})
    cfg.resume = True
    run_toy(cfg)
    assert state_dicts_equal(
        safe_torch_load(str(tmp_path / 'full' / 'iter_6.pth'))['state_dict'],
        safe_torch_load(str(work / 'iter_6.pth'))['state_dict'])

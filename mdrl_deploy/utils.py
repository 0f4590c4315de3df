"""Small helpers with one home for both layers (torch-free): atomic writes
(docs/search.md, "Atomic save"), message lists, top-k."""
import os
import os.path as osp
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager, suppress
from typing import Any, BinaryIO, Callable, Iterator, Sequence

__all__ = [
    'TEMP_FILE_PATTERN', 'AtomicWriteError', 'atomic_folder', 'atomic_write',
    'atomic_write_bytes', 'check_topk', 'first_n', 'fsync_dir',
    'remove_stale_temps', 'temp_path'
]

#: Temp entries; ``.<name>.<pid>.<hex>.part`` is the old naming (no host).
TEMP_FILE_PATTERN = re.compile(
    r'^\.(?P<target>.+?)(\.(?P<host>[\w-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp'
    r'|\.\d+\.[0-9a-f]{8}\.part)$')


def _host() -> str:
    return re.sub(r'[^\w-]', '_', socket.gethostname()) or 'host'


def temp_path(target: str) -> str:
    """A unique sibling ``.<name>.<host>.<pid>.<8 hex>.tmp`` of ``target``."""
    folder, name = osp.split(osp.abspath(os.fspath(target)))
    return osp.join(folder, f'.{name}.{_host()}.{os.getpid()}.'
                    f'{uuid.uuid4().hex[:8]}.tmp')


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's process
        pass
    return False


def remove_stale_temps(folder: str, max_age_s: float = 6 * 3600) -> None:
    """Remove temps in ``folder`` of dead pids (this host) or older ones."""
    names = os.listdir(folder) if osp.isdir(folder) else []
    for match in filter(None, map(TEMP_FILE_PATTERN.match, names)):
        path = osp.join(folder, match.string)
        with suppress(OSError):  # removed meanwhile by another cleaner
            if (match['host'] == _host() and _dead(int(match['pid']))) or \
                    time.time() - os.lstat(path).st_mtime > max_age_s:
                if osp.isdir(path) and not osp.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)


def fsync_dir(folder: str) -> None:
    """Make renames in ``folder`` durable (no-op where unsupported)."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicWriteError(OSError):
    """``filepath`` could not be written; its previous version is untouched."""

    def __init__(self, filepath: str, error: OSError) -> None:
        super().__init__(
            error.errno,
            f"Could not write '{filepath}': {error.strerror or error}. "
            'Nothing was replaced: the previous version of the file (for a '
            'checkpoint, the last complete one) is untouched and usable. '
            'Free disk space or choose a writable --work-dir, then continue '
            'with tools/train.py --resume.', filepath)

    def __str__(self) -> str:
        return self.strerror


def atomic_write(filepath: str, write: Callable[[BinaryIO], None]) -> None:
    """Write ``filepath`` atomically: ``write(f)`` fills a sibling temp file,
    fsynced and renamed over it, then the folder is fsynced; an OSError
    raises AtomicWriteError and leaves ``filepath`` untouched.

    Args:
        filepath: Destination file.
        write: Called with the open binary temp file.
    """
    filepath = osp.abspath(os.fspath(filepath))
    folder, tmp = osp.dirname(filepath), temp_path(filepath)
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)
        try:
            with open(tmp, 'xb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):  # not renamed: the write failed
                os.unlink(tmp)
        fsync_dir(folder)
    except OSError as e:
        raise AtomicWriteError(filepath, e) from e


def atomic_write_bytes(data: bytes, filepath: str) -> None:
    """Write ``data`` to ``filepath`` with :func:`atomic_write`."""
    atomic_write(filepath, lambda f: f.write(data))


@contextmanager
def atomic_folder(path: str, replace: bool = False) -> Iterator[str]:
    """Build the folder ``path`` atomically in the yielded temp folder beside
    it; on error ``path`` stays as it was (docs/search.md, "Atomic save").

    Args:
        path: The folder to create (or replace).
        replace: Replace an existing ``path`` instead of failing on it.

    Yields:
        str: The temp folder.
    """
    path = osp.abspath(os.fspath(path))
    remove_stale_temps(osp.dirname(path))
    tmp, old = temp_path(path), None
    os.makedirs(tmp)
    try:
        yield tmp
        for name in os.listdir(tmp):
            with open(osp.join(tmp, name), 'rb') as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        if replace and osp.lexists(path):
            old = temp_path(path)
            os.rename(path, old)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not osp.lexists(path):
            os.rename(old, path)
        raise
    fsync_dir(osp.dirname(path))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def first_n(items: Sequence[Any], n: int = 5, sep: str = ', ') -> str:
    """``'a, b, c and 7 more'``: the first ``n`` items, then the rest counted.

    Args:
        items: What to list (each formatted with ``str``).
        n: How many to show.
        sep: Between shown items.

    Returns:
        str: The list for a message.
    """
    shown = sep.join(str(i) for i in items[:n])
    return shown + (f' and {len(items) - n} more' if len(items) > n else '')


def check_topk(topk: Any, name: str = 'topk') -> int:
    """``topk`` as an int; a ValueError unless a positive int (not bool)."""
    if isinstance(topk, bool) or not hasattr(topk, '__index__') or \
            int(topk) < 1:
        raise ValueError(f'{name} must be a positive int, got {topk!r}')
    return int(topk)

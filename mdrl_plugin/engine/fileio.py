"""Atomic writes, host-aware temp cleanup, and the ``'local_atomic'`` backend.

A file is written to a sibling temp entry ``.<name>.<host>.<pid>.<8 hex>.tmp``,
flushed, ``fsync``-ed and ``os.replace``-d onto its name, then the folder is
``fsync``-ed: a reader sees the old file or the new one, never a partial one.
Select it for checkpoints with ``CheckpointHook(backend_args=dict(
backend='local_atomic'))``.
"""
import os
import os.path as osp
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = [
    'AtomicLocalBackend', 'AtomicWriteError', 'atomic_write',
    'atomic_write_bytes', 'fsync_dir', 'remove_stale_temps', 'temp_path',
    'TEMP_FILE_PATTERN'
]

#: Temp entries: ``.<target>.<host>.<pid>.<hex>.tmp``; before 0.2 the name
#: was ``.<target>.<pid>.<hex>.part`` (no host: removed by age only).
TEMP_FILE_PATTERN = re.compile(
    r'^\.(?P<target>.+?)(\.(?P<host>[\w-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp'
    r'|\.\d+\.[0-9a-f]{8}\.part)$')


def _host() -> str:
    return re.sub(r'[^\w-]', '_', socket.gethostname()) or 'host'


def temp_path(target: str) -> str:
    """A unique sibling temp name for ``target`` (a file or a folder).

    Args:
        target: The final path.

    Returns:
        ``<folder>/.<name>.<host>.<pid>.<8 hex>.tmp``.
    """
    folder, name = osp.split(osp.abspath(os.fspath(target)))
    return osp.join(folder, f'.{name}.{_host()}.{os.getpid()}.'
                    f'{uuid.uuid4().hex[:8]}.tmp')


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's live process
        pass
    return True


def remove_stale_temps(folder: str, max_age_s: float = 6 * 3600) -> None:
    """Remove temp entries that no live writer owns.

    An entry goes when this host wrote it and its pid is dead, or (from any
    host, and old ``.part`` files) when it is older than ``max_age_s``. Live
    temp entries of other nodes sharing the folder survive.

    Args:
        folder: The folder to clean; a missing one is ignored.
        max_age_s: Age (by mtime) after which any temp entry is stale.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    host, now = _host(), time.time()
    for name in names:
        match = TEMP_FILE_PATTERN.match(name)
        path = osp.join(folder, name)
        try:
            stale = (match is not None and (
                (match['host'] == host and not _pid_alive(int(match['pid'])))
                or now - os.lstat(path).st_mtime > max_age_s))
            if stale and osp.isdir(path) and not osp.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            elif stale:
                os.unlink(path)
        except OSError:  # removed meanwhile by another cleaner
            pass


def fsync_dir(folder: str) -> None:
    """``fsync`` a folder so that a rename in it is durable (no-op where
    folders cannot be opened, e.g. Windows).

    Args:
        folder: The folder.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicWriteError(OSError):
    """A file could not be written (full disk, read-only folder...); the
    previous version of the target is untouched.

    Args:
        filepath: The file that was being written.
        error: The operating system's error.
    """

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


def atomic_write(filepath: Union[str, Path],
                 write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(f)`` so that it is never seen partial.

    Args:
        filepath: Destination; its folder is created if needed.
        write: Fills the open binary temp file.

    Raises:
        AtomicWriteError: The folder or the temp file could not be written;
            the temp file is removed and the old target left untouched.
    """
    filepath = osp.abspath(os.fspath(filepath))
    folder, tmp = osp.dirname(filepath), temp_path(filepath)
    try:
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)
        # 0o666 minus the umask, like a plain open(..., 'wb')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, 'wb') as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.unlink(tmp)
            raise
        fsync_dir(folder)
    except AtomicWriteError:
        raise
    except OSError as e:
        raise AtomicWriteError(filepath, e) from e


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` atomically (see :func:`atomic_write`).

    Args:
        data: The bytes to write.
        filepath: Destination; its folder is created if needed.
    """
    atomic_write(filepath, lambda f: f.write(data))


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes atomically.

        Args:
            obj: Data to be written.
            filepath: Path to write data.
        """
        atomic_write_bytes(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Write text atomically.

        Args:
            obj: Text to be written.
            filepath: Path to write data.
            encoding: Text encoding.
        """
        atomic_write_bytes(obj.encode(encoding), filepath)

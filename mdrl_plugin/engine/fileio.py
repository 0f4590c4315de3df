"""A local file backend whose writes are atomic.

MMEngine's ``save_checkpoint`` serialises a checkpoint to bytes and hands them
to the file backend's ``put``; the stock ``LocalBackend`` opens the target with
``'wb'`` and writes, so a kill during the write leaves a truncated file under
the final name. :class:`AtomicLocalBackend` writes to a temporary file in the
same folder, flushes and ``fsync``\\ s it, then ``os.replace``\\ s it onto the
target (atomic on POSIX and Windows) and ``fsync``\\ s the folder. A reader
sees the old file or the new file, never a partial one.

Select it for checkpoints with the checkpoint hook's backend arguments::

    default_hooks = dict(checkpoint=dict(
        type='CheckpointHook', backend_args=dict(backend='local_atomic')))
"""
import os
import os.path as osp
import re
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Union

from mmengine.fileio import LocalBackend, register_backend

__all__ = [
    'AtomicLocalBackend', 'AtomicWriteError', 'atomic_write',
    'atomic_write_bytes', 'TEMP_FILE_PATTERN'
]

#: Name pattern of the temporary files (``.<target>.<pid>.<hex>.part``).
TEMP_FILE_PATTERN = re.compile(r'^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}'
                               r'\.part$')


class AtomicWriteError(OSError):
    """A file could not be written (full disk, read-only folder...).

    The target was not touched: its previous version (for checkpoints, the
    last complete one) is still whole.

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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return True
    return True


def _remove_stale_temp_files(folder: str) -> None:
    """Delete temp files left by killed writers (their pid is gone)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        match = TEMP_FILE_PATTERN.match(name)
        if match and not _pid_alive(int(match.group('pid'))):
            try:
                os.unlink(osp.join(folder, name))
            except OSError:
                pass


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(filepath: Union[str, Path],
                 write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(f)`` so that it is never seen partial.

    ``write`` fills a temporary file in the target's folder, which is then
    flushed, ``fsync``-ed and ``os.replace``-d onto ``filepath``; on any error
    the temporary file is removed and the old target is left untouched.

    Args:
        filepath: Destination; its folder is created if needed.
        write: Called with the open binary temporary file.

    Raises:
        AtomicWriteError: The folder or the temporary file could not be
            written (no space left, read-only, permission denied).
    """
    filepath = osp.abspath(os.fspath(filepath))
    try:
        _atomic_write(filepath, write)
    except AtomicWriteError:
        raise
    except OSError as e:
        raise AtomicWriteError(filepath, e) from e


def _atomic_write(filepath: str, write: Callable[[BinaryIO], None]) -> None:
    folder = osp.dirname(filepath)
    os.makedirs(folder, exist_ok=True)
    _remove_stale_temp_files(folder)
    tmp = osp.join(
        folder,
        f'.{osp.basename(filepath)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part')
    # 0o666 minus the umask, like a plain open(..., 'wb')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def atomic_write_bytes(data: bytes, filepath: Union[str, Path]) -> None:
    """Write ``data`` to ``filepath`` so that the file is never partial.

    Args:
        data: The bytes to write.
        filepath: Destination; its folder is created if needed.
    """
    atomic_write(filepath, lambda f: f.write(data))


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose ``put``/``put_text`` replace files atomically.

    Registered as MMEngine file backend ``'local_atomic'``; select it with
    ``backend_args=dict(backend='local_atomic')``. Reading, listing and
    removing behave as in ``LocalBackend``.
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Write bytes atomically (temp file, fsync, ``os.replace``).

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

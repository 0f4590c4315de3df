"""Atomic writes (readers see the old or the new file, never a partial one),
temp cleanup by host and age, and the MMEngine file backend 'local_atomic'."""
from mmengine.fileio import LocalBackend, register_backend

# one home for both layers: mdrl_deploy.utils (torch-free)
from mdrl_deploy.utils import (
    TEMP_FILE_PATTERN,
    AtomicWriteError,
    atomic_folder,
    atomic_write,
    atomic_write_bytes,
    fsync_dir,
    remove_stale_temps,
    temp_path,
)

__all__ = [
    'TEMP_FILE_PATTERN', 'AtomicWriteError', 'AtomicLocalBackend',
    'atomic_folder', 'atomic_write', 'atomic_write_bytes', 'fsync_dir',
    'remove_stale_temps', 'temp_path'
]


@register_backend('local_atomic')
class AtomicLocalBackend(LocalBackend):
    """MMEngine's ``LocalBackend`` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: str) -> None:
        # looked up at call time, so tests can make this write fail
        atomic_write_bytes(obj, filepath)

    def put_text(self, obj: str, filepath: str, encoding: str = 'utf-8'):
        atomic_write_bytes(obj.encode(encoding), filepath)

"""The gallery feature index: features, paths, labels and a model fingerprint.

One implementation serves both search paths: it lives in the torch-free
:mod:`mdrl_deploy.index` (so the ONNX Runtime searcher can read and write the
same files without torch) and is re-exported here for ``PersonSearcher``.

The file format (one ``.npz`` of features plus a JSON header, nothing
unpickled) is described in :mod:`mdrl_deploy.index` and docs/search.md.
"""
from mdrl_deploy.index import (FINGERPRINT_KEYS, INDEX_FORMAT, INDEX_VERSION,
                               GalleryIndex, IndexFormatError,
                               IndexMismatchError, StaleIndexError,
                               config_sha256, file_sha256, file_stat)

__all__ = [
    'GalleryIndex', 'IndexFormatError', 'IndexMismatchError',
    'StaleIndexError', 'INDEX_FORMAT', 'INDEX_VERSION', 'FINGERPRINT_KEYS',
    'file_sha256', 'config_sha256', 'file_stat'
]

"""The gallery feature index: features, paths, labels and a model fingerprint.

One implementation serves both search paths: it lives in the torch-free
:mod:`mdrl_deploy.index` (so the ONNX Runtime searcher can read and write the
same files without torch) and is re-exported here for ``PersonSearcher``.

An index file is one uncompressed ``.npz`` archive (read with
``allow_pickle=False``) with two arrays:

* ``features``: ``float32 [N, D]``, one L2-normalised feature per image;
* ``header``: ``uint8`` bytes of a UTF-8 JSON object::

    {"format": "mdrl-search-index", "version": 1,
     "num_images": N, "feature_dim": D, "root": "/abs/gallery" | null,
     "fingerprint": {"config_sha256": ..., "checkpoint_sha256": ...,
                     "feature_dim": D, "config": ..., "checkpoint": ...},
     "paths": [abs path, ...], "sizes": [bytes, ...],
     "mtime_ns": [int, ...], "labels": [int | str | null, ...] | null,
     "created": "2026-01-01T12:00:00+00:00"}

Nothing in it is unpickled, so loading an index from an untrusted source
cannot run code.
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

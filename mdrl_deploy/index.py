"""The gallery feature index, torch-free: a folder of ``.npy`` arrays and
``meta.json`` (the text cache's layout), memory-mapped with ``np.load``,
never unpickled. docs/search.md ("The index folder") lists the files.
"""
import datetime
import hashlib
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .ranking import summarize
from .utils import atomic_folder, first_n

__all__ = [
    'GalleryIndex', 'IndexFormatError', 'IndexMismatchError',
    'StaleIndexError', 'file_sha256', 'config_sha256', 'file_stat'
]

#: ``format`` and ``version`` of ``meta.json`` (1 and 2 were ``.npz`` files).
INDEX_FORMAT = 'mdrl-search-index'
INDEX_VERSION = 3
_ARRAYS = ('features', 'sizes', 'mtime_ns', 'summary', 'spread')

Label = Union[int, str]


class IndexFormatError(ValueError):
    """The path is not an index written by :meth:`GalleryIndex.save`."""


class IndexMismatchError(ValueError):
    """The index was made by another model (config, checkpoint or width)."""


class StaleIndexError(ValueError):
    """Image files of the index changed or vanished since it was built."""


def file_sha256(path: str) -> str:
    """SHA-256 hex digest of a file's bytes (read in chunks by hashlib)."""
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def config_sha256(obj: Any) -> str:
    """SHA-256 of sorted-key JSON of config data (else by ``repr``)."""
    text = json.dumps(obj, sort_keys=True, separators=(',', ':'), default=repr)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def file_stat(path: str) -> Tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of a file."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def _rebuild_hint(index_path: Optional[str]) -> str:
    return ('Rebuild it from the image folder with the model you search with: '
            '`python tools/search.py CONFIG CHECKPOINT --gallery IMAGE_FOLDER '
            f'--save-index {index_path or "INDEX_FOLDER"}` (or '
            'build_index(folder) followed by save_index).')


def _where(index_path: Optional[str]) -> str:
    return f'Index {index_path!r}' if index_path else 'The index'


@dataclass
class GalleryIndex:
    """Features of a gallery of images and what is needed to trust them.

    Args:
        paths: Absolute image paths, one per row of ``features``.
        features: ``float32 [N, D]`` L2-normalised image features.
        fingerprint: The model that made them (``*_sha256``, ``feature_dim``
            compared; ``config``, ``checkpoint`` named in messages).
        sizes: File size in bytes of each image when it was encoded.
        mtimes_ns: Modification time (ns) of each image then.
        labels: Identity of each image (None where unknown), or None.
        root: The gallery folder, or None for a list of files.
        created: ISO-8601 creation time (UTC).
        global_dim: Width ``G`` of the global part of ``global+local``
            features, None for global features.
        summary: ``[2G, N]`` of :func:`~.ranking.summarize` (None: computed).
        spread: ``[P, N]``, likewise.
    """
    paths: List[str]
    features: np.ndarray
    fingerprint: Dict[str, Any]
    sizes: Sequence[int]
    mtimes_ns: Sequence[int]
    labels: Optional[List[Optional[Label]]] = None
    root: Optional[str] = None
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec='seconds'))
    global_dim: Optional[int] = None
    summary: Optional[np.ndarray] = None
    spread: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        feats = np.asanyarray(self.features)
        if feats.ndim != 2 or 0 in feats.shape:
            raise ValueError(f'GalleryIndex: features must be [N, D] with at '
                             'least one image and one dimension, got shape '
                             f'{tuple(feats.shape)}')
        if feats.dtype != np.float32 or not feats.flags.c_contiguous:
            feats = np.ascontiguousarray(feats, dtype=np.float32)
        self.features = feats
        n, dim = feats.shape
        self.sizes = np.asarray(self.sizes, dtype=np.int64).reshape(-1)
        self.mtimes_ns = np.asarray(self.mtimes_ns, np.int64).reshape(-1)
        for name in ('paths', 'sizes', 'mtimes_ns', 'labels'):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f'GalleryIndex: {name} has {len(value)} '
                                 f'entries for {n} feature rows')
        if self.global_dim in (None, dim):  # global features: no summary
            self.global_dim = self.summary = self.spread = None
            return
        self.global_dim = int(self.global_dim)
        if self.global_dim < 1 or dim % self.global_dim:
            raise ValueError(f'GalleryIndex: global_dim must divide the '
                             f'feature width {dim}, got {self.global_dim}')
        if self.summary is None or self.spread is None:
            self.summary, self.spread = summarize(feats, self.global_dim)
        elif self.summary.shape != (2 * self.global_dim, n) or \
                self.spread.shape != (dim // self.global_dim - 1, n):
            raise ValueError(
                f'GalleryIndex: summary and spread must be '
                f'[{2 * self.global_dim}, {n}] and '
                f'[{dim // self.global_dim - 1}, {n}], got '
                f'{tuple(self.summary.shape)} and {tuple(self.spread.shape)}')

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of the features."""
        return int(self.features.shape[1])

    def check_fingerprint(self, fingerprint: Dict[str, Any],
                          index_path: Optional[str] = None) -> None:
        """Refuse an index made by another model than ``fingerprint``'s
        (IndexMismatchError naming each difference and how to rebuild)."""
        mine, theirs = self.fingerprint, fingerprint
        diffs = []
        if mine.get('feature_dim') != theirs.get('feature_dim'):
            diffs.append(f'feature width: index {mine.get("feature_dim")}, '
                         f'model {theirs.get("feature_dim")}')
        for key, what, name in (
                ('checkpoint_sha256', 'checkpoint', 'checkpoint'),
                ('config_sha256', 'model config and test pipeline', 'config')):
            if mine.get(key) != theirs.get(key):
                diffs.append(
                    f'{what}: index made with {mine.get(name)!r} (sha256 '
                    f'{str(mine.get(key))[:12]}), searching with '
                    f'{theirs.get(name)!r} '
                    f'(sha256 {str(theirs.get(key))[:12]})')
        if diffs:
            raise IndexMismatchError(
                f'{_where(index_path)} was made by another model; it differs '
                'in ' + '; '.join(diffs) + '. Its features cannot be compared '
                'with this model\'s text features. ' +
                _rebuild_hint(index_path))

    def check_files(self, index_path: Optional[str] = None) -> None:
        """Refuse an index whose images changed (size, mtime) or vanished
        (StaleIndexError naming the files and how to rebuild)."""
        missing, changed = [], []
        for path, stat in zip(self.paths, zip(self.sizes.tolist(),
                                              self.mtimes_ns.tolist())):
            try:
                if file_stat(path) != stat:
                    changed.append(repr(path))
            except OSError:
                missing.append(repr(path))
        parts = []
        if changed:
            parts.append(f'{len(changed)} of {len(self)} image files changed '
                         'since it was built (size or modification time '
                         f'differ): {first_n(changed)}')
        if missing:
            parts.append(f'{len(missing)} of {len(self)} image files no '
                         f'longer exist or cannot be read: {first_n(missing)}')
        if parts:
            raise StaleIndexError(
                f'{_where(index_path)} is out of date: ' + '; '.join(parts) +
                '. ' + _rebuild_hint(index_path))

    def meta(self) -> Dict[str, Any]:
        """The content of ``meta.json``."""
        return dict(
            format=INDEX_FORMAT, version=INDEX_VERSION, num_images=len(self),
            feature_dim=self.feature_dim, global_dim=self.global_dim,
            root=self.root, fingerprint=self.fingerprint,
            created=self.created, paths=list(self.paths),
            labels=None if self.labels is None else list(self.labels))

    def save(self, path: str) -> str:
        """Write the index folder ``path`` (absent, or an index to replace)
        atomically; returns its absolute path."""
        path = osp.abspath(path)
        folder = osp.dirname(path)
        if not osp.isdir(folder):
            raise FileNotFoundError(f'Cannot save the index to {path!r}: '
                                    f'folder {folder!r} does not exist.')
        if osp.lexists(path) and not osp.isfile(osp.join(path, 'meta.json')):
            raise FileExistsError(
                f'Cannot save the index to {path!r}: it exists and is not an '
                'index folder (an index is a folder of .npy files and '
                'meta.json); choose a new name.')
        arrays = zip(_ARRAYS, (self.features, self.sizes, self.mtimes_ns,
                               self.summary, self.spread))
        with atomic_folder(path, replace=True) as tmp:
            for name, array in arrays:  # mapped: written page by page
                if array is not None:
                    np.save(osp.join(tmp, name + '.npy'), array,
                            allow_pickle=False)
            with open(osp.join(tmp, 'meta.json'), 'w', encoding='utf-8') as f:
                json.dump(self.meta(), f, ensure_ascii=False)
        return path

    @classmethod
    def load(cls, path: str, mmap: bool = True) -> 'GalleryIndex':
        """Open an index folder of :meth:`save`, its arrays memory-mapped
        read-only (or read: ``mmap=False``), not checked against a model;
        IndexFormatError if it is not an index folder of this version."""
        if osp.isfile(path):
            raise IndexFormatError(
                f'{path!r} is a single-file index of an earlier version; '
                'indexes are folders now. ' + _rebuild_hint('NEW_FOLDER'))
        if not osp.isdir(path):
            raise FileNotFoundError(f'Index {path!r} does not exist.')
        try:
            with open(osp.join(path, 'meta.json'), encoding='utf-8') as f:
                meta = json.load(f)
            arrays = {name: np.load(osp.join(path, name + '.npy'),
                                    mmap_mode='r' if mmap else None,
                                    allow_pickle=False)
                      for name in _ARRAYS
                      if osp.isfile(osp.join(path, name + '.npy'))}
        except (OSError, ValueError) as err:
            raise IndexFormatError(
                f'{path!r} is not an MDRL search index (a folder written by '
                f'save_index): {type(err).__name__}: {err}') from err
        if not isinstance(meta, dict) or meta.get('format') != INDEX_FORMAT \
                or meta.get('version') != INDEX_VERSION:
            raise IndexFormatError(
                f'{path!r}: meta.json is not that of an MDRL search index of '
                f'version {INDEX_VERSION}. ' + _rebuild_hint(path))
        missing = [k for k in ('paths', 'fingerprint') if k not in meta] + \
            [k + '.npy' for k in _ARRAYS[:3] if k not in arrays]
        if missing:
            raise IndexFormatError(f'{path!r}: the index lacks {missing}.')
        if arrays['features'].dtype != np.float32:
            raise IndexFormatError(f'{path!r}: features must be float32, got '
                                   f'{arrays["features"].dtype}.')
        try:
            return cls(paths=list(meta['paths']), features=arrays['features'],
                       fingerprint=dict(meta['fingerprint']),
                       sizes=arrays['sizes'], mtimes_ns=arrays['mtime_ns'],
                       labels=meta.get('labels'), root=meta.get('root'),
                       created=meta.get('created', ''),
                       global_dim=meta.get('global_dim'),
                       summary=arrays.get('summary'),
                       spread=arrays.get('spread'))
        except (ValueError, TypeError) as err:
            raise IndexFormatError(f'{path!r}: {err}') from err

"""The gallery feature index, torch-free: features, paths, labels, fingerprint.

The one implementation of the index of ``PersonSearcher``
(``save_index``/``load_index``; :mod:`mdrl_plugin.apis.index` re-exports it)
and of the ONNX search path (:mod:`mdrl_deploy.ort_search`), written without
torch, mmengine or the plugin so that both share index files.

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
import datetime
import hashlib
import json
import os
import os.path as osp
import tempfile
from dataclasses import dataclass, field
from typing import (Any, BinaryIO, Callable, Dict, List, Optional,
                    Sequence, Tuple, Union)

import numpy as np


__all__ = [
    'GalleryIndex', 'IndexFormatError', 'IndexMismatchError',
    'StaleIndexError', 'INDEX_FORMAT', 'INDEX_VERSION', 'FINGERPRINT_KEYS',
    'file_sha256', 'config_sha256', 'file_stat', 'atomic_write'
]

#: ``format`` field of the JSON header.
INDEX_FORMAT = 'mdrl-search-index'
#: ``version`` field of the JSON header.
INDEX_VERSION = 1
#: Fingerprint fields that must be equal for an index to be reused.
FINGERPRINT_KEYS: Tuple[str, ...] = ('config_sha256', 'checkpoint_sha256',
                                     'feature_dim')

Label = Union[int, str]

#: How many file names an error message lists.
_SHOW = 5


class IndexFormatError(ValueError):
    """The file is not an index written by :meth:`GalleryIndex.save`."""


class IndexMismatchError(ValueError):
    """The index was made by another model (config, checkpoint or width)."""


class StaleIndexError(ValueError):
    """Image files of the index changed or vanished since it was built."""


def file_sha256(path: str, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks.

    Args:
        path: The file.
        chunk_size: Bytes read at a time.

    Returns:
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def config_sha256(obj: Any) -> str:
    """SHA-256 of a canonical JSON dump (sorted keys) of a config object.

    Args:
        obj: Plain dicts/lists/scalars (e.g. ``ConfigDict.to_dict()``);
            anything JSON cannot encode is hashed by its ``repr``.

    Returns:
        The hex digest.
    """
    text = json.dumps(obj, sort_keys=True, separators=(',', ':'), default=repr)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def file_stat(path: str) -> Tuple[int, int]:
    """``(size in bytes, modification time in ns)`` of a file."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)


def atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Write a file through ``write(f)`` so that readers never see it partial.

    The data goes to a temporary file in the destination folder, is flushed
    and ``fsync``-ed, and then replaces ``path`` (``os.replace``); on error the
    temporary file is removed and an existing ``path`` is left untouched.

    Args:
        path: Destination file.
        write: Called with the open binary temporary file.
    """
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.',
                               suffix='.part', dir=folder)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


def _names(paths: Sequence[str]) -> str:
    shown = ', '.join(repr(p) for p in paths[:_SHOW])
    if len(paths) > _SHOW:
        shown += f' and {len(paths) - _SHOW} more'
    return shown


def _rebuild_hint(index_path: Optional[str]) -> str:
    target = index_path or 'INDEX.npz'
    return ('Rebuild it from the image folder with the model you search with: '
            f'`python tools/search.py CONFIG CHECKPOINT --gallery IMAGE_FOLDER '
            f'--save-index {target}` (or PersonSearcher.build_index(folder) '
            'followed by save_index).')


@dataclass
class GalleryIndex:
    """Features of a gallery of images and what is needed to trust them.

    Args:
        paths: Absolute image paths, one per row of ``features``.
        features: ``float32 [N, D]`` L2-normalised image features.
        fingerprint: The model that made the features: ``config_sha256``,
            ``checkpoint_sha256``, ``feature_dim`` (compared) and
            ``config``/``checkpoint`` names (informational).
        sizes: File size in bytes of each image when it was encoded.
        mtimes_ns: Modification time (ns) of each image when it was encoded.
        labels: Identity label of each image (None where unknown), or None
            when the gallery has no labels.
        root: The gallery folder (relative label paths are resolved against
            it), or None.
        created: ISO-8601 creation time (UTC).
    """
    paths: List[str]
    features: np.ndarray
    fingerprint: Dict[str, Any]
    sizes: List[int]
    mtimes_ns: List[int]
    labels: Optional[List[Optional[Label]]] = None
    root: Optional[str] = None
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec='seconds'))

    def __post_init__(self) -> None:
        feats = np.asarray(self.features)
        if feats.ndim != 2:
            raise ValueError(f'GalleryIndex: features must be [N, D], got '
                             f'shape {tuple(feats.shape)}')
        self.features = np.ascontiguousarray(feats, dtype=np.float32)
        n = self.features.shape[0]
        for name in ('paths', 'sizes', 'mtimes_ns'):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f'GalleryIndex: {name} has {len(getattr(self, name))} '
                    f'entries for {n} feature rows')
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f'GalleryIndex: labels has {len(self.labels)} '
                             f'entries for {n} feature rows')

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def feature_dim(self) -> int:
        """Width ``D`` of the features."""
        return int(self.features.shape[1])

    # ------------------------------------------------------------ checks
    def check_fingerprint(self, fingerprint: Dict[str, Any],
                          index_path: Optional[str] = None) -> None:
        """Refuse an index made by another model.

        Args:
            fingerprint: The fingerprint of the model that wants to use it.
            index_path: The index file (for the message).

        Raises:
            IndexMismatchError: Naming every field that differs and how to
                rebuild the index.
        """
        diffs = []
        mine, theirs = self.fingerprint, fingerprint
        if mine.get('feature_dim') != theirs.get('feature_dim'):
            diffs.append(f'feature width: index {mine.get("feature_dim")}, '
                         f'model {theirs.get("feature_dim")}')
        for key, what, name in (('checkpoint_sha256', 'checkpoint',
                                 'checkpoint'),
                                ('config_sha256', 'model config and test '
                                 'pipeline', 'config')):
            if mine.get(key) != theirs.get(key):
                diffs.append(
                    f'{what}: index made with {mine.get(name)!r} (sha256 '
                    f'{str(mine.get(key))[:12]}), searching with '
                    f'{theirs.get(name)!r} (sha256 {str(theirs.get(key))[:12]})')
        if diffs:
            where = f'Index {index_path!r}' if index_path else 'The index'
            raise IndexMismatchError(
                f'{where} was made by another model; it differs in ' +
                '; '.join(diffs) + '. Its features cannot be compared with '
                'this model\'s text features. ' + _rebuild_hint(index_path))

    def check_files(self, index_path: Optional[str] = None) -> None:
        """Refuse an index whose image files changed or vanished.

        Every file is compared by size and modification time (one ``stat``
        each).

        Args:
            index_path: The index file (for the message).

        Raises:
            StaleIndexError: Counting and naming the changed and missing
                files, and saying how to rebuild.
        """
        missing, changed = [], []
        for path, size, mtime in zip(self.paths, self.sizes, self.mtimes_ns):
            try:
                now = file_stat(path)
            except FileNotFoundError:
                missing.append(path)
                continue
            except OSError:
                missing.append(path)
                continue
            if now != (int(size), int(mtime)):
                changed.append(path)
        if not missing and not changed:
            return
        parts = []
        if changed:
            parts.append(f'{len(changed)} of {len(self)} image files changed '
                         f'since it was built (size or modification time '
                         f'differ): {_names(changed)}')
        if missing:
            parts.append(f'{len(missing)} of {len(self)} image files no longer '
                         f'exist or cannot be read: {_names(missing)}')
        where = f'Index {index_path!r}' if index_path else 'The index'
        raise StaleIndexError(f'{where} is out of date: ' + '; '.join(parts) +
                              '. ' + _rebuild_hint(index_path))

    # ------------------------------------------------------------ file I/O
    def header(self) -> Dict[str, Any]:
        """The JSON header written by :meth:`save`."""
        return dict(
            format=INDEX_FORMAT,
            version=INDEX_VERSION,
            num_images=len(self),
            feature_dim=self.feature_dim,
            root=self.root,
            fingerprint=self.fingerprint,
            created=self.created,
            paths=list(self.paths),
            sizes=[int(s) for s in self.sizes],
            mtime_ns=[int(m) for m in self.mtimes_ns],
            labels=None if self.labels is None else list(self.labels))

    def save(self, path: str) -> str:
        """Write the index atomically.

        The archive goes to a temporary file in the destination folder, is
        flushed to disk, and then replaces ``path`` with ``os.replace``; on
        any error the temporary file is removed and an existing ``path`` is
        left untouched.

        Args:
            path: Destination file (``.npz`` recommended; the name is used as
                given).

        Returns:
            The absolute path written.
        """
        path = osp.abspath(path)
        folder = osp.dirname(path)
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'Cannot save the index to {path!r}: folder {folder!r} does '
                'not exist.')
        header = json.dumps(self.header(), ensure_ascii=False).encode('utf-8')
        atomic_write(path, lambda f: np.savez(
            f, features=self.features,
            header=np.frombuffer(header, dtype=np.uint8)))
        return path

    @classmethod
    def load(cls, path: str) -> 'GalleryIndex':
        """Read an index written by :meth:`save` (no unpickling).

        Args:
            path: The index file.

        Returns:
            The index (not yet checked against a model or the files; see
            :meth:`check_fingerprint` and :meth:`check_files`).

        Raises:
            FileNotFoundError: If ``path`` does not exist.
            IndexFormatError: If it is not a valid index file.
        """
        if not osp.isfile(path):
            raise FileNotFoundError(f'Index file {path!r} does not exist.')
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                if not {'features', 'header'} <= keys:
                    raise IndexFormatError(
                        f'{path!r} is not an MDRL search index: expected the '
                        f'arrays "features" and "header", found '
                        f'{sorted(keys)}.')
                features = data['features']
                raw_header = data['header']
        except IndexFormatError:
            raise
        except Exception as err:  # zipfile/numpy raise many types
            raise IndexFormatError(
                f'{path!r} is not an MDRL search index (a .npz archive written '
                f'by save_index): {type(err).__name__}: {err}') from err
        try:
            header = json.loads(raw_header.astype(np.uint8).tobytes()
                                .decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as err:
            raise IndexFormatError(
                f'{path!r}: the index header is not UTF-8 JSON: {err}') from err
        if not isinstance(header, dict) or header.get('format') != INDEX_FORMAT:
            raise IndexFormatError(
                f'{path!r} is not an MDRL search index: header format is '
                f'{header.get("format") if isinstance(header, dict) else None!r}'
                f', expected {INDEX_FORMAT!r}.')
        if header.get('version') != INDEX_VERSION:
            raise IndexFormatError(
                f'{path!r}: index version {header.get("version")!r} is not '
                f'supported (this code reads version {INDEX_VERSION}); '
                + _rebuild_hint(path))
        if features.dtype != np.float32 or features.ndim != 2:
            raise IndexFormatError(
                f'{path!r}: features must be float32 [N, D], got '
                f'{features.dtype} {tuple(features.shape)}.')
        missing = [k for k in ('paths', 'sizes', 'mtime_ns', 'fingerprint')
                   if k not in header]
        if missing:
            raise IndexFormatError(
                f'{path!r}: the index header lacks {missing}.')
        try:
            return cls(paths=list(header['paths']), features=features,
                       fingerprint=dict(header['fingerprint']),
                       sizes=list(header['sizes']),
                       mtimes_ns=list(header['mtime_ns']),
                       labels=header.get('labels'), root=header.get('root'),
                       created=header.get('created', ''))
        except ValueError as err:
            raise IndexFormatError(f'{path!r}: {err}') from err

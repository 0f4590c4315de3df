"""The gallery feature index, torch-free: features, paths, labels, fingerprint.

The one implementation of the index of ``PersonSearcher``
(``save_index``/``load_index``; :mod:`mdrl_plugin.apis.index` re-exports it)
and of the ONNX search path (:mod:`mdrl_deploy.ort_search`), written without
torch, mmengine or the plugin so that both share index files.

An index file is an uncompressed zip of ``.npy`` arrays (an ``.npz`` that
``np.load`` opens, read with ``allow_pickle=False``). Version 2 holds:

* ``features``: ``float32 [N, D]``, one L2-normalised feature per image;
* ``summary``: ``float32 [2G, N]`` and ``spread``: ``float32 [P, N]`` (one
  column per image), only for ``global+local`` features (``global_dim`` G
  set, P local parts): what
  :class:`~mdrl_deploy.ranking.Ranker` scans to rank exactly while reading
  less (:func:`~mdrl_deploy.ranking.summarize`);
* ``sizes``, ``mtime_ns``: ``int64 [N]``, each file's size and modification
  time when it was encoded;
* ``header``: ``uint8`` bytes of a UTF-8 JSON object::

    {"format": "mdrl-search-index", "version": 2,
     "num_images": N, "feature_dim": D, "global_dim": G | null,
     "root": "/abs/gallery" | null,
     "fingerprint": {"config_sha256": ..., "checkpoint_sha256": ...,
                     "feature_dim": D, "config": ..., "checkpoint": ...},
     "paths": [abs path, ...], "labels": [int | str | null, ...] | null,
     "created": "2026-01-01T12:00:00+00:00"}

The data of every array starts at a multiple of 64 bytes in the file, so the
feature arrays are memory-mapped on load, not read: a gallery larger than
RAM is searched through the page cache. Version 1 files (``features`` and
``header`` only, sizes and times in the header) still load, also mapped.
Nothing in a file is unpickled, so loading an index from an untrusted source
cannot run code.
"""
import datetime
import hashlib
import io
import json
import os
import os.path as osp
import struct
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import (Any, BinaryIO, Callable, Dict, List, Optional,
                    Sequence, Tuple, Union)

import numpy as np

from .ranking import summarize


__all__ = [
    'GalleryIndex', 'IndexFormatError', 'IndexMismatchError',
    'StaleIndexError', 'INDEX_FORMAT', 'INDEX_VERSION', 'READ_VERSIONS',
    'FINGERPRINT_KEYS',
    'file_sha256', 'config_sha256', 'file_stat', 'atomic_write'
]

#: ``format`` field of the JSON header.
INDEX_FORMAT = 'mdrl-search-index'
#: ``version`` field of the JSON header written by :meth:`GalleryIndex.save`.
INDEX_VERSION = 2
#: Versions :meth:`GalleryIndex.load` reads.
READ_VERSIONS = (1, 2)
#: Array data in an index file starts at a multiple of this many bytes.
ALIGN = 64
#: Bytes written per block when saving (no full-size temporary copies).
_WRITE_BYTES = 1 << 24
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


def _write_member(zf: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    """Write ``array`` as ``name.npy``, data aligned to :data:`ALIGN` bytes.

    The local file header gets a padding extra field (zip readers skip
    unknown fields) so that the array data lands on an aligned offset.
    Rows are written in blocks, so a memory map is never copied whole.
    """
    fname = name + '.npy'
    meta = np.lib.format.header_data_from_array_1_0(array)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, meta)  # padded to ALIGN
    # local header: 30 bytes + name + extra (padding, 4 + n) + zip64 (20)
    n = -(zf.start_dir + 30 + len(fname) + 4 + 20) % ALIGN
    info = zipfile.ZipInfo(fname, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.extra = struct.pack('<HH', 0x6d64, n) + bytes(n)
    info.file_size = len(buf.getvalue()) + array.nbytes
    with zf.open(info, 'w', force_zip64=True) as f:
        f.write(buf.getvalue())
        row_bytes = array.itemsize * int(np.prod(array.shape[1:]))
        rows = max(1, _WRITE_BYTES // max(row_bytes, 1))
        for start in range(0, len(array), rows):
            block = np.ascontiguousarray(array[start:start + rows])
            f.write(memoryview(block).cast('B'))


def _read_member(path: str, zf: zipfile.ZipFile, name: str,
                 mmap: bool) -> np.ndarray:
    """The array ``name.npy`` of an index file, memory-mapped when stored.

    Raises:
        IndexFormatError: If the member is missing, not a plain ``.npy`` or
            holds objects.
    """
    fname = name + '.npy'
    try:
        info = zf.getinfo(fname)
    except KeyError:
        raise IndexFormatError(
            f'{path!r} is not an MDRL search index: it has no array '
            f'{name!r} (arrays: {sorted(n[:-4] for n in zf.namelist())}).'
        ) from None
    if not mmap or info.compress_type != zipfile.ZIP_STORED:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    with open(path, 'rb') as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b'PK\x03\x04':
            raise IndexFormatError(f'{path!r}: damaged zip entry {fname!r}.')
        name_len, extra_len = struct.unpack('<HH', local[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        f.seek(start)
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise IndexFormatError(f'{path!r}: array {name!r} has .npy '
                                   f'version {version}, expected 1.0 or 2.0.')
        shape, fortran, dtype = read(f)
        offset = f.tell()
    if dtype.hasobject:
        raise IndexFormatError(f'{path!r}: array {name!r} holds Python '
                               'objects; an index never does.')
    size = int(np.prod(shape)) * dtype.itemsize
    if offset - start + size != info.file_size:
        raise IndexFormatError(f'{path!r}: array {name!r} is truncated.')
    if size == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode='r', offset=offset, shape=shape,
                     order='F' if fortran else 'C')


@dataclass
class GalleryIndex:
    """Features of a gallery of images and what is needed to trust them.

    Args:
        paths: Absolute image paths, one per row of ``features``.
        features: ``float32 [N, D]`` L2-normalised image features (an
            in-memory array or a read-only ``np.memmap``).
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
        global_dim: Width ``G`` of the global part at the start of each
            feature (``global+local`` layout), None when the features are
            global only.
        summary: ``float32 [2G, N]`` and
        spread: ``float32 [P, N]`` of
            :func:`~mdrl_deploy.ranking.summarize` (made when None and
            ``global_dim`` is set).
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
        feats = self.features
        if not isinstance(feats, np.ndarray):
            feats = np.asarray(feats)
        if feats.ndim != 2:
            raise ValueError(f'GalleryIndex: features must be [N, D], got '
                             f'shape {tuple(feats.shape)}')
        if feats.dtype != np.float32 or not feats.flags.c_contiguous:
            feats = np.ascontiguousarray(feats, dtype=np.float32)
        self.features = feats
        n, dim = feats.shape
        if n == 0 or dim == 0:
            raise ValueError(f'GalleryIndex: features must hold at least one '
                             f'image and one dimension, got shape {(n, dim)}')
        self.sizes = np.asarray(self.sizes, dtype=np.int64).reshape(-1)
        self.mtimes_ns = np.asarray(self.mtimes_ns,
                                    dtype=np.int64).reshape(-1)
        for name in ('paths', 'sizes', 'mtimes_ns'):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f'GalleryIndex: {name} has {len(getattr(self, name))} '
                    f'entries for {n} feature rows')
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f'GalleryIndex: labels has {len(self.labels)} '
                             f'entries for {n} feature rows')
        if self.global_dim is not None:
            self.global_dim = int(self.global_dim)
            if self.global_dim < 1 or dim % self.global_dim:
                raise ValueError(f'GalleryIndex: global_dim must divide the '
                                 f'feature width {dim}, got {self.global_dim}')
            if self.global_dim == dim:
                self.global_dim = None
        if self.global_dim is None:
            self.summary = self.spread = None
        elif self.summary is None or self.spread is None:
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

    @property
    def is_mapped(self) -> bool:
        """Whether the features are memory-mapped from the index file."""
        return isinstance(self.features, np.memmap) or \
            isinstance(self.features.base, np.memmap)

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
        for path, size, mtime in zip(self.paths, self.sizes.tolist(),
                                     self.mtimes_ns.tolist()):
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
            global_dim=self.global_dim,
            root=self.root,
            fingerprint=self.fingerprint,
            created=self.created,
            paths=list(self.paths),
            labels=None if self.labels is None else list(self.labels))

    def save(self, path: str) -> str:
        """Write the index atomically (format version 2).

        The archive goes to a temporary file in the destination folder, is
        flushed to disk, and then replaces ``path`` with ``os.replace``; on
        any error the temporary file is removed and an existing ``path`` is
        left untouched. Features are written in blocks of rows, so a mapped
        index can be saved without reading it into memory.

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
        arrays = dict(header=np.frombuffer(header, dtype=np.uint8),
                      sizes=self.sizes, mtime_ns=self.mtimes_ns,
                      features=self.features)
        if self.summary is not None:
            arrays.update(summary=self.summary, spread=self.spread)

        def write(f: BinaryIO) -> None:
            with zipfile.ZipFile(f, 'w', zipfile.ZIP_STORED) as zf:
                for name, array in arrays.items():
                    _write_member(zf, name, array)

        atomic_write(path, write)
        return path

    @classmethod
    def load(cls, path: str, mmap: bool = True) -> 'GalleryIndex':
        """Read an index written by :meth:`save` (no unpickling).

        Args:
            path: The index file (format version 1 or 2).
            mmap: Memory-map the feature arrays (read-only) instead of
                reading them into memory.

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
            with zipfile.ZipFile(path) as zf:
                names = {n[:-4] for n in zf.namelist() if n.endswith('.npy')}
                if not {'features', 'header'} <= names:
                    raise IndexFormatError(
                        f'{path!r} is not an MDRL search index: expected the '
                        f'arrays "features" and "header", found '
                        f'{sorted(names)}.')
                header = _parse_header(
                    path, _read_member(path, zf, 'header', mmap=False))
                arrays = {name: _read_member(path, zf, name, mmap=mmap)
                          for name in ('features', 'summary', 'spread')
                          if name in names}
                if header['version'] >= 2:
                    for name in ('sizes', 'mtime_ns'):
                        arrays[name] = _read_member(path, zf, name, mmap=False)
        except IndexFormatError:
            raise
        except Exception as err:  # zipfile/numpy raise many types
            raise IndexFormatError(
                f'{path!r} is not an MDRL search index (a .npz archive written '
                f'by save_index): {type(err).__name__}: {err}') from err
        features = arrays['features']
        if features.dtype != np.float32 or features.ndim != 2:
            raise IndexFormatError(
                f'{path!r}: features must be float32 [N, D], got '
                f'{features.dtype} {tuple(features.shape)}.')
        if header['version'] == 1:
            arrays['sizes'], arrays['mtime_ns'] = header['sizes'], \
                header['mtime_ns']
        try:
            return cls(paths=list(header['paths']), features=features,
                       fingerprint=dict(header['fingerprint']),
                       sizes=arrays['sizes'], mtimes_ns=arrays['mtime_ns'],
                       labels=header.get('labels'), root=header.get('root'),
                       created=header.get('created', ''),
                       global_dim=header.get('global_dim'),
                       summary=arrays.get('summary'),
                       spread=arrays.get('spread'))
        except (ValueError, TypeError) as err:
            raise IndexFormatError(f'{path!r}: {err}') from err


def _parse_header(path: str, raw: np.ndarray) -> Dict[str, Any]:
    """The JSON header of an index file, checked for format and version."""
    try:
        header = json.loads(raw.astype(np.uint8).tobytes().decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as err:
        raise IndexFormatError(
            f'{path!r}: the index header is not UTF-8 JSON: {err}') from err
    if not isinstance(header, dict) or header.get('format') != INDEX_FORMAT:
        raise IndexFormatError(
            f'{path!r} is not an MDRL search index: header format is '
            f'{header.get("format") if isinstance(header, dict) else None!r}'
            f', expected {INDEX_FORMAT!r}.')
    if header.get('version') not in READ_VERSIONS:
        raise IndexFormatError(
            f'{path!r}: index version {header.get("version")!r} is not '
            f'supported (this code reads versions '
            f'{", ".join(map(str, READ_VERSIONS))}); ' + _rebuild_hint(path))
    needed = ['paths', 'fingerprint'] + (
        ['sizes', 'mtime_ns'] if header['version'] == 1 else [])
    missing = [k for k in needed if k not in header]
    if missing:
        raise IndexFormatError(f'{path!r}: the index header lacks {missing}.')
    return header

"""What both searchers share: hits, folder scan, labels, encoding loop and
index; ``PersonSearcher`` and ``OrtSearcher`` only supply the encoders."""
import json
import os
import os.path as osp
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .index import GalleryIndex, Label, file_stat
from .ranking import Ranker
from .utils import check_topk, first_n

__all__ = [
    'IMAGE_EXTENSIONS', 'Label', 'SearchHit', 'scan_images', 'check_queries',
    'read_labels', 'QueryTruncatedWarning',
    'SkippedImagesWarning', 'UnmatchedLabelsWarning', 'GallerySearcher'
]

#: File name endings (lower case) taken as images by a folder scan.
IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm',
                                     '.pgm', '.pbm', '.tif', '.tiff', '.webp')
_EXAMPLE = '"a woman in a red coat and black trousers"'
Labels = Union[str, 'os.PathLike[str]', Mapping[str, Label]]


class SkippedImagesWarning(UserWarning):
    """Some gallery files were not indexed (unreadable or not images)."""


class QueryTruncatedWarning(UserWarning):
    """A query is longer than the model's text length and was cut."""


class UnmatchedLabelsWarning(UserWarning):
    """Labels were given but some or all gallery images have none."""


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery image for a query; unpacks as ``(path, score)``.

    Args:
        rank: 1-based rank.
        path: Absolute image path.
        score: Cosine similarity with the query.
        label: Identity of the image, None if unknown.
        index: Row of the image in the gallery index.
    """
    rank: int
    path: str
    score: float
    label: Optional[Label] = None
    index: int = -1

    def __iter__(self) -> Iterator:
        return iter((self.path, self.score))


def scan_images(folder: str) -> Tuple[List[str], List[str]]:
    """Absolute ``(image files, other files)`` under ``folder``, recursively,
    sorted (images: names ending in :data:`IMAGE_EXTENSIONS`)."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(osp.abspath(folder)):
        dirnames.sort()
        for name in sorted(filenames):
            path = osp.join(dirpath, name)
            (images if name.lower().endswith(IMAGE_EXTENSIONS) else
             others).append(path)
    return images, others


def check_queries(texts: Union[str, Sequence[str]]) -> List[str]:
    """The stripped queries (one str is one query); ValueError if there is
    none or one is blank, TypeError if one is not a str."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ValueError(f'No query given: pass a description such as '
                         f'{_EXAMPLE}.')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f'Query texts[{i}] must be a str, got '
                            f'{type(text).__name__}')
        if not text.strip():
            raise ValueError(f'Query texts[{i}] is empty: describe the '
                             f'person, e.g. {_EXAMPLE}.')
    return [t.strip() for t in texts]


def read_labels(labels: Labels, root: Optional[str]) -> Dict[str, Label]:
    """Identity labels of gallery images: ``{image path: identity}``.

    Args:
        labels: A JSON file holding such an object, or the dict itself;
            identities are ints or non-empty strings.
        root: What relative paths are relative to (None: the working dir).

    Returns:
        Absolute normalised image path to identity.
    """
    source = 'labels'
    if isinstance(labels, (str, os.PathLike)):
        source = f'Labels file {str(labels)!r}'
        if not osp.isfile(labels):
            raise FileNotFoundError(f'{source} does not exist.')
        try:
            with open(labels, encoding='utf-8-sig') as f:
                labels = json.load(f)
        except ValueError as err:  # UnicodeDecodeError, JSONDecodeError
            raise ValueError(f'{source} is not valid UTF-8 JSON: {err}') \
                from err
    if not isinstance(labels, Mapping):
        raise ValueError(
            f'{source} holds a JSON {type(labels).__name__}; expected an '
            'object {"image path": identity} (for a PEDES annotation list, '
            'see docs/search.md, "Labels").')
    out: Dict[str, Label] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f'{source}: image paths must be non-empty '
                             f'strings, got {key!r}')
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (
                isinstance(value, str) and not value.strip()):
            raise ValueError(f'{source}, image {key!r}: an identity label '
                             f'must be an int or a non-empty string, got '
                             f'{value!r}')
        path = osp.normpath(osp.join(root or os.getcwd(),
                                     key.strip().replace('\\', '/')))
        if out.setdefault(path, value) != value:
            raise ValueError(f'{source}: image {path!r} is listed twice with '
                             f'different labels ({out[path]!r} and {value!r})')
    return out


class GallerySearcher:
    """Index, labels, encoding loop and ranking; subclasses bring the model.

    A subclass sets the attributes below (``global_dim``: width of the
    global part of ``global+local`` features, else None) and implements the
    encoders: ``_read_image(path)`` (one preprocessed image; raises for an
    unreadable file), ``_encode_images(images)`` and ``_encode_texts(texts)``
    (L2-normalised features ``float32 [B, D]``) and ``_token_lengths(texts)``
    (untruncated token counts, [CLS] and [SEP] included). Once an index is
    set, every method may be called from several threads at once, provided
    the encoders may.
    """

    #: ``(index, ranker)``, replaced as one pair: a search running while
    #: another thread loads an index sees the old pair or the new one.
    _indexed: Tuple[Optional[GalleryIndex], Optional[Ranker]] = (None, None)
    #: Extra fingerprint field naming the encoder (e.g. ``onnxruntime``).
    encoder_name: Optional[str] = None
    fingerprint: Dict[str, Any]
    feature_dim: int
    global_dim: Optional[int] = None
    max_length: int
    batch_size: int
    num_workers: int = 0
    progress: bool = False

    def _set_encoding(self, batch_size: int, num_workers: int,
                      progress: bool) -> None:
        """Check and set the three encoding-loop attributes above."""
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if num_workers < 0:
            raise ValueError(f'num_workers must be >= 0, got {num_workers}')
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.progress = progress

    def _try_read(self, path: str) -> Tuple[Any, Any]:
        """``(file_stat, image)``, or ``(None, 'Type: first line')``."""
        try:
            return file_stat(path), self._read_image(path)
        except Exception as err:  # decoders raise many types
            msg = (str(err).strip().splitlines() or [''])[0]
            return None, f'{type(err).__name__}: {msg}'[:200]

    def encode_images(self, paths: Sequence[str]
                      ) -> Tuple[np.ndarray, List[int], List[Tuple[int, int]],
                                 List[Tuple[str, str]]]:
        """Encode image files ``batch_size`` at a time (read by
        ``num_workers`` threads, or this one), skipping unreadable ones.

        Returns:
            ``(features float32 [M, D], kept positions in paths,
            (size, mtime_ns) of each kept file, [(path, reason)] skipped)``.
        """
        feats, kept, stats, skipped = [], [], [], []
        with ThreadPoolExecutor(max(self.num_workers, 1)) as pool:
            read = pool.map if self.num_workers else map
            for start in range(0, len(paths), self.batch_size):
                batch = paths[start:start + self.batch_size]
                images = []
                for i, (stat, out) in enumerate(read(self._try_read, batch),
                                                start):
                    if stat is None:
                        skipped.append((paths[i], out))
                    else:
                        kept.append(i)
                        stats.append(stat)
                        images.append(out)
                if images:
                    feats.append(np.asarray(self._encode_images(images),
                                            np.float32))
                if self.progress:
                    print(f'\rencoded {start + len(batch)}/{len(paths)} '
                          'images', end='', file=sys.stderr, flush=True)
        if self.progress and len(paths):
            print(file=sys.stderr)
        features = (np.concatenate(feats) if feats else
                    np.zeros((0, self.feature_dim), np.float32))
        return features, kept, stats, skipped

    def encode_texts(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """L2-normalised query features ``float32 [T, D]``; a query longer
        than ``max_length`` tokens is cut (:class:`QueryTruncatedWarning`)."""
        texts = check_queries(texts)
        for i, n in enumerate(self._token_lengths(texts)):
            if n > self.max_length:
                # no query text: Python keeps every distinct warning text
                # forever, and a server sees unboundedly many
                warnings.warn(
                    f'Query texts[{i}] has {n} tokens but the model reads at '
                    f'most {self.max_length} (max_length of the config, '
                    '[CLS] and [SEP] included): the last '
                    f'{n - self.max_length} tokens are ignored.',
                    QueryTruncatedWarning, stacklevel=3)
        return np.concatenate([
            self._encode_texts(texts[s:s + self.batch_size])
            for s in range(0, len(texts), self.batch_size)]).astype(np.float32)

    def _apply_labels(self, paths: Sequence[str],
                      mapping: Dict[str, Label]) -> List[Optional[Label]]:
        out = [mapping.get(osp.normpath(p)) for p in paths]
        unlabelled = [p for p, lab in zip(paths, out) if lab is None]
        if len(unlabelled) == len(paths):
            warnings.warn(
                f'None of the {len(paths)} gallery images has a label: the '
                f'{len(mapping)} labelled paths match no gallery file (paths '
                'must be absolute or relative to the gallery folder); gallery '
                f'files look like {paths[0]!r}.',
                UnmatchedLabelsWarning, stacklevel=3)
        elif unlabelled:
            warnings.warn(
                f'{len(unlabelled)} of {len(paths)} gallery images have no '
                f'label: {first_n(unlabelled)}', UnmatchedLabelsWarning,
                stacklevel=3)
        return out

    def build_index(self, image_paths_or_folder: Union[str, Sequence[str]],
                    labels: Optional[Labels] = None) -> GalleryIndex:
        """Encode a gallery and make it the searched index.

        Args:
            image_paths_or_folder: A folder (scanned recursively) or a list
                of image files and/or folders.
            labels: Optional identities, see :func:`read_labels`.

        Returns:
            The new :class:`~.index.GalleryIndex` (also ``self.index``).
        """
        sources = [str(image_paths_or_folder)] if isinstance(
            image_paths_or_folder, (str, os.PathLike)) else \
            [str(s) for s in image_paths_or_folder]
        if not sources:
            raise ValueError('build_index got an empty list of images.')
        paths, others = [], []
        for src in sources:
            if not (osp.isdir(src) or osp.isfile(src)):
                raise FileNotFoundError(
                    f'Gallery path {src!r} does not exist (expected an image '
                    'file or a folder of images).')
            imgs, rest = scan_images(src) if osp.isdir(src) else (
                [osp.abspath(src)], [])
            paths += imgs
            others += rest
        root = osp.abspath(sources[0]) if len(sources) == 1 and \
            osp.isdir(sources[0]) else None
        mapping = None if labels is None else read_labels(labels, root)
        where = (f'folder {sources[0]!r}' if root else
                 f'the {len(sources)} given paths')
        if not paths:
            extra = (f' (it holds {len(others)} other files, e.g. '
                     f'{osp.basename(others[0])!r})' if others else
                     ' (it is empty)')
            raise ValueError(
                f'No image files in {where}{extra}; expected files ending in '
                f'{", ".join(IMAGE_EXTENSIONS)}.')

        features, kept, stats, skipped = self.encode_images(paths)
        if skipped or others:
            parts = []
            if skipped:
                parts.append(f'{len(skipped)} unreadable image file(s): ' +
                             first_n([f'{p} ({why})' for p, why in skipped]))
            if others:
                parts.append(f'{len(others)} non-image file(s): ' +
                             first_n(others))
            warnings.warn(
                f'Skipped {len(skipped) + len(others)} of '
                f'{len(paths) + len(others)} files in {where}: ' +
                '; '.join(parts), SkippedImagesWarning, stacklevel=2)
        if not kept:
            raise ValueError(
                f'No readable image in {where}: all {len(paths)} image files '
                f'failed to load, e.g. {skipped[0][0]!r} ({skipped[0][1]}).')
        kept_paths = [paths[i] for i in kept]
        finite = np.isfinite(features).all(axis=1)
        if not finite.all():
            bad = [kept_paths[i] for i in np.flatnonzero(~finite)]
            raise ValueError(
                f'The model gave non-finite features (NaN or inf) for '
                f'{len(bad)} image(s) in {where}: {first_n(bad)}. Check the '
                'checkpoint (or the export) before indexing.')
        fingerprint = dict(self.fingerprint)
        if self.encoder_name:
            fingerprint['encoder'] = self.encoder_name
        self.index = GalleryIndex(
            paths=kept_paths, features=features, fingerprint=fingerprint,
            sizes=[s[0] for s in stats], mtimes_ns=[s[1] for s in stats],
            labels=None if mapping is None else
            self._apply_labels(kept_paths, mapping),
            root=root, global_dim=self.global_dim)
        return self.index

    @property
    def index(self) -> Optional[GalleryIndex]:
        """The searched index (or None); assigning one builds its ranker."""
        return self._indexed[0]

    @index.setter
    def index(self, index: Optional[GalleryIndex]) -> None:
        self._indexed = (None, None) if index is None else (
            index, Ranker(index.features, index.summary, index.spread))

    def _require_index(self) -> GalleryIndex:
        if self.index is None:
            raise RuntimeError('No gallery index yet: call '
                               'build_index(folder) or load_index(path) '
                               'first.')
        return self.index

    def set_labels(self, labels: Labels) -> None:
        """Set the identities of the index's images (:func:`read_labels`)."""
        index = self._require_index()
        index.labels = self._apply_labels(index.paths,
                                          read_labels(labels, index.root))

    def save_index(self, path: str) -> str:
        """Save the index folder atomically; returns its absolute path."""
        return self._require_index().save(path)

    def load_index(self, path: str, check_files: bool = True,
                   mmap: bool = True) -> GalleryIndex:
        """Load an index (written by either searcher) and search it; refused
        with IndexFormatError, IndexMismatchError or StaleIndexError.

        Args:
            path: A folder written by :meth:`save_index`.
            check_files: Refuse it if an image changed or vanished since.
            mmap: Memory-map the arrays instead of reading them.

        Returns:
            The index.
        """
        index = GalleryIndex.load(path, mmap=mmap)
        index.check_fingerprint(self.fingerprint, index_path=path)
        if check_files:
            index.check_files(index_path=path)
        self.index = index
        return index

    @property
    def num_images(self) -> int:
        """Number of images in the current index (0 without one)."""
        return 0 if self.index is None else len(self.index)

    def search_features(self, query_feats: np.ndarray,
                        topk: int = 10) -> List[List[SearchHit]]:
        """Rank the index for already-encoded queries.

        Args:
            query_feats: ``[T, D]`` L2-normalised query features.
            topk: Hits per query; more than the gallery holds returns all.

        Returns:
            Per query, the hits in rank order.
        """
        index, ranker = self._indexed
        if index is None:
            self._require_index()
        scores, indices = ranker.search(query_feats, topk)
        labels = index.labels
        return [[SearchHit(rank=r + 1, path=index.paths[i], score=float(s),
                           label=None if labels is None else labels[i],
                           index=int(i))
                 for r, (s, i) in enumerate(zip(row_s, row_i))]
                for row_s, row_i in zip(scores.tolist(), indices.tolist())]

    def search(self, texts: Union[str, Sequence[str]],
               topk: int = 10) -> List[List[SearchHit]]:
        """Rank the gallery for each description.

        Args:
            texts: One description or a list.
            topk: Hits per query; more than the gallery holds returns all.

        Returns:
            One list of :class:`SearchHit` per query, best first.
        """
        self._require_index()
        check_topk(topk)
        return self.search_features(self.encode_texts(texts), topk)

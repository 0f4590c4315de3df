"""What both searchers share: hits, folder scan, query checks, index handling.

:class:`GallerySearcher` holds everything of a text-to-image searcher but the
two encoders: building, labelling, saving and loading the index, checking
queries and ranking. ``mdrl_plugin.apis.PersonSearcher`` (PyTorch) and
:class:`mdrl_deploy.OrtSearcher` (ONNX Runtime) implement the encoders
(:meth:`GallerySearcher.encode_images`, ``_token_lengths`` and
``_encode_batch``), so both index, warn and rank in exactly the same way.
Torch-free.
"""
import os
import os.path as osp
import warnings
from dataclasses import dataclass
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from .index import GalleryIndex
from .labels import Label, check_label, load_labels, resolve_label_map
from .ranking import Ranker

__all__ = [
    'IMAGE_EXTENSIONS', 'SearchHit', 'scan_images', 'check_queries',
    'check_topk', 'skip_reason', 'QueryTruncatedWarning', 'SkippedImagesWarning',
    'UnmatchedLabelsWarning', 'GallerySearcher', 'format_results'
]

#: File name endings (lower case) taken as images by a folder scan.
IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm',
                                     '.pgm', '.pbm', '.tif', '.tiff',
                                     '.webp')
#: How many file names a warning lists.
_SHOW = 5
_EXAMPLE = '"a woman in a red coat and black trousers"'


class SkippedImagesWarning(UserWarning):
    """Some gallery files were not indexed (unreadable or not images)."""


class QueryTruncatedWarning(UserWarning):
    """A query is longer than the model's text length and was cut."""


class UnmatchedLabelsWarning(UserWarning):
    """Labels were given but some or all gallery images have none."""


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery image for a query.

    Unpacks as ``(path, score)``: ``for path, score in hits: ...``.

    Args:
        rank: 1-based rank.
        path: Absolute image path.
        score: Cosine similarity with the query.
        label: Identity label of the image, None if unknown.
        index: Row of the image in the gallery index.
    """
    rank: int
    path: str
    score: float
    label: Optional[Label] = None
    index: int = -1

    def __iter__(self) -> Iterator:
        return iter((self.path, self.score))


def scan_images(folder: str,
                extensions: Sequence[str] = IMAGE_EXTENSIONS
                ) -> Tuple[List[str], List[str]]:
    """List the files under a folder, recursively, in sorted order.

    Args:
        folder: The folder.
        extensions: Lower-case name endings taken as images.

    Returns:
        ``(image files, other files)`` as absolute normalised paths.
    """
    folder = osp.abspath(folder)
    images, others = [], []
    exts = tuple(e.lower() for e in extensions)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = osp.join(dirpath, name)
            (images if name.lower().endswith(exts) else others).append(path)
    return images, others


def check_queries(texts: Union[str, Sequence[str]]) -> List[str]:
    """The stripped queries, or an error naming the bad one.

    Args:
        texts: One query or a list.

    Returns:
        The queries, stripped.

    Raises:
        ValueError: If there is none or one is empty/whitespace.
        TypeError: If one is not a str.
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
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


def check_topk(topk: Any) -> int:
    """``topk`` as an int, or ValueError if it is not a positive int."""
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) \
            or topk < 1:
        raise ValueError(f'topk must be a positive int, got {topk!r}')
    return int(topk)


def _names(items: Sequence[str]) -> str:
    shown = ', '.join(items[:_SHOW])
    if len(items) > _SHOW:
        shown += f', ... ({len(items) - _SHOW} more)'
    return shown


def format_results(queries: Sequence[str], results: Sequence[Sequence],
                   query_labels: Sequence[Optional[Label]]) -> str:
    """The ranking as text: per query a head line and one row per hit.

    Rows are ``rank  score  label  [match]  path``; the match column
    (``yes``/``no``/``-``) appears when the query's identity is known.

    Args:
        queries: Query texts.
        results: Per query, its hits (:class:`SearchHit`).
        query_labels: Per query, the identity it describes, or None.

    Returns:
        The text.
    """
    lines: List[str] = []
    for q, (query, hits, qlab) in enumerate(zip(queries, results,
                                                query_labels)):
        lines.append(f'Query {q + 1}: {query}' +
                     ('' if qlab is None else f'  [pid {qlab}]'))
        lines.append(f'{"rank":>5}  {"score":>7}  {"label":>8}  ' +
                     ('' if qlab is None else 'match  ') + 'path')
        for hit in hits:
            label = '-' if hit.label is None else str(hit.label)
            row = f'{hit.rank:>5}  {hit.score:>7.4f}  {label:>8}  '
            if qlab is not None:
                mark = '-' if hit.label is None else (
                    'yes' if hit.label == qlab else 'no')
                row += f'{mark:<5}  '
            lines.append(row + hit.path)
        lines.append('')
    return '\n'.join(lines)


def _read_pedes_records(records: list, path: str) -> Dict[str, Label]:
    """PEDES annotation lists are read by the plugin's dataset parser."""
    try:
        from mdrl_plugin.apis.labels import read_pedes_labels
    except ImportError as err:
        raise ValueError(
            f'Labels file {path!r} is a PEDES annotation list, which only the '
            f'plugin reads (mdrl_plugin, needs torch: {err}); without it give '
            'a JSON object {"image path": id}.') from err
    return read_pedes_labels(records, path)


def skip_reason(err: BaseException) -> str:
    """One line saying why an image file was skipped: ``Type: message``."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ''
    return f'{type(err).__name__}: {msg}'[:200]


def _as_array(feats: Any) -> np.ndarray:
    """NumPy view of query features (a torch tensor is moved to the CPU)."""
    if hasattr(feats, 'detach'):
        feats = feats.detach().float().cpu().numpy()
    return np.asarray(feats, dtype=np.float32)


class GallerySearcher:
    """Index, labels and ranking of a searcher; subclasses bring the encoders.

    A subclass sets ``fingerprint`` (the model's identity, see
    :class:`~mdrl_deploy.index.GalleryIndex`), ``feature_dim``,
    ``global_dim`` (width of the global part of ``global+local`` features,
    else None; lets :class:`~mdrl_deploy.ranking.Ranker` read less),
    ``max_length`` (text tokens) and ``batch_size``, sets ``index = None``, and
    implements :meth:`encode_images`, :meth:`_token_lengths` and
    :meth:`_encode_batch`. Every method here is safe to call from several
    threads at once once the index is set (the server does), provided the
    encoders are.
    """

    #: ``(index, ranker)``, replaced as one pair: a search running while
    #: another thread loads an index sees the old pair or the new one.
    _indexed: Tuple[Optional[GalleryIndex], Any] = (None, None)
    #: Extra fingerprint field naming the encoder (e.g. ``onnxruntime``).
    encoder_name: Optional[str] = None
    fingerprint: Dict[str, Any]
    feature_dim: int
    global_dim: Optional[int] = None
    max_length: int
    batch_size: int

    # ------------------------------------------------------------ encoders
    def encode_images(self, paths: Sequence[str]
                      ) -> Tuple[np.ndarray, List[int], List[Tuple[int, int]],
                                 List[Tuple[str, str]]]:
        """Encode image files in batches, skipping the unreadable ones.

        Args:
            paths: Image files.

        Returns:
            ``(features float32 [M, D], kept positions in paths,
            (size, mtime_ns) of each kept file, [(path, reason)] skipped)``.
        """
        raise NotImplementedError

    def _token_lengths(self, texts: List[str]) -> List[int]:
        """Untruncated token counts ([CLS] and [SEP] included)."""
        raise NotImplementedError

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        """L2-normalised features ``float32 [B, D]`` of checked queries."""
        raise NotImplementedError

    def encode_queries(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """L2-normalised query features ``float32 [T, D]`` (NumPy).

        A query longer than ``max_length`` tokens is truncated with a
        :class:`QueryTruncatedWarning`.

        Raises:
            ValueError: If there is no query or one is empty/whitespace.
        """
        texts = check_queries(texts)
        for i, n in enumerate(self._token_lengths(texts)):
            if n > self.max_length:
                # no query text in the message: Python remembers every
                # distinct warning text, and a server sees unboundedly many
                warnings.warn(
                    f'Query texts[{i}] has {n} tokens but the model reads at '
                    f'most {self.max_length} (max_length of the config, '
                    '[CLS] and [SEP] included): the last '
                    f'{n - self.max_length} tokens are ignored.',
                    QueryTruncatedWarning, stacklevel=3)
        return np.concatenate([
            self._encode_batch(texts[s:s + self.batch_size])
            for s in range(0, len(texts), self.batch_size)]).astype(np.float32)

    # ------------------------------------------------------------ index
    def _label_map(self, labels, root: Optional[str]) -> Dict[str, Label]:
        if isinstance(labels, (str, os.PathLike)):
            return load_labels(str(labels), root,
                               read_records=_read_pedes_records)
        if isinstance(labels, Mapping):
            return resolve_label_map(labels, root, source='labels')
        raise TypeError('labels must be a labels file, a dict {image path: '
                        'label} or (for a list of image paths) a list of '
                        f'labels; got {type(labels).__name__}')

    def _apply_label_map(self, paths: Sequence[str],
                         mapping: Dict[str, Label]) -> List[Optional[Label]]:
        out = [mapping.get(osp.normpath(p)) for p in paths]
        unlabelled = [p for p, lab in zip(paths, out) if lab is None]
        if len(unlabelled) == len(paths):
            warnings.warn(
                f'None of the {len(paths)} gallery images has a label: the '
                f'{len(mapping)} labelled paths match no gallery file (paths '
                'must be absolute or relative to the gallery folder, the '
                'labels file\'s folder, or their imgs/); gallery files look '
                f'like {paths[0]!r}.',
                UnmatchedLabelsWarning, stacklevel=3)
        elif unlabelled:
            warnings.warn(
                f'{len(unlabelled)} of {len(paths)} gallery images have no '
                f'label: {_names(unlabelled)}', UnmatchedLabelsWarning,
                stacklevel=3)
        return out

    def build_index(self,
                    image_paths_or_folder: Union[str, Sequence[str]],
                    labels: Union[None, str, Mapping[str, Label],
                                  Sequence[Label]] = None) -> GalleryIndex:
        """Encode a gallery and make it the searched index.

        Args:
            image_paths_or_folder: A folder (scanned recursively for
                :data:`IMAGE_EXTENSIONS`) or a list of image files and/or
                folders.
            labels: Optional identity labels: a labels file (JSON
                ``{path: label}`` or a PEDES annotation file, see
                :func:`~mdrl_deploy.labels.load_labels`), a dict
                ``{path: label}`` (paths absolute or relative to the gallery
                folder), or, for a list of image files, a list of labels in
                the same order.

        Returns:
            The new :class:`~mdrl_deploy.index.GalleryIndex` (also kept as
            ``self.index``).

        Raises:
            FileNotFoundError: If a given file or folder does not exist.
            ValueError: If no image could be read (the message says what was
                found), or the labels do not fit.
        """
        if isinstance(image_paths_or_folder, (str, os.PathLike)):
            sources = [str(image_paths_or_folder)]
        else:
            sources = [str(s) for s in image_paths_or_folder]
        if not sources:
            raise ValueError('build_index got an empty list of images.')
        paths: List[str] = []
        others: List[str] = []
        explicit = True
        for src in sources:
            if osp.isdir(src):
                imgs, rest = scan_images(src)
                paths += imgs
                others += rest
                explicit = False
            elif osp.isfile(src):
                paths.append(osp.abspath(src))
            else:
                raise FileNotFoundError(
                    f'Gallery path {src!r} does not exist (expected an image '
                    'file or a folder of images).')
        root = osp.abspath(sources[0]) if len(sources) == 1 and \
            osp.isdir(sources[0]) else None

        label_list: Optional[List[Optional[Label]]] = None
        label_map: Optional[Dict[str, Label]] = None
        if labels is not None:
            if isinstance(labels, Sequence) and not isinstance(labels, str):
                if not explicit:
                    raise ValueError(
                        'A list of labels needs a list of image files (in the '
                        'same order); for a folder pass a labels file or a '
                        'dict {image path: label}.')
                if len(labels) != len(paths):
                    raise ValueError(f'Got {len(labels)} labels for '
                                     f'{len(paths)} images; expected one each.')
                label_list = [None if lab is None else
                              check_label(lab, f'labels[{i}]')
                              for i, lab in enumerate(labels)]
            else:
                label_map = self._label_map(labels, root)

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
                parts.append(
                    f'{len(skipped)} unreadable image file(s): ' +
                    _names([f'{p} ({why})' for p, why in skipped]))
            if others:
                parts.append(f'{len(others)} non-image file(s): ' +
                             _names(others))
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
                f'{len(bad)} image(s) in {where}: {_names(bad)}. Check the '
                'checkpoint (or the export) before indexing.')
        if label_list is not None:
            final_labels = [label_list[i] for i in kept]
        elif label_map is not None:
            final_labels = self._apply_label_map(kept_paths, label_map)
        else:
            final_labels = None
        fingerprint = dict(self.fingerprint)
        if self.encoder_name:
            fingerprint['encoder'] = self.encoder_name
        index = GalleryIndex(
            paths=kept_paths, features=features, fingerprint=fingerprint,
            sizes=[s[0] for s in stats], mtimes_ns=[s[1] for s in stats],
            labels=final_labels, root=root, global_dim=self.global_dim)
        self._set_index(index)
        return index

    def _make_ranker(self, index: GalleryIndex):
        """The ranking backend over ``index`` (``search(q, k)`` in NumPy)."""
        return Ranker(index.features, index.summary, index.spread)

    def _set_index(self, index: GalleryIndex) -> None:
        if index.global_dim is None and self.global_dim is not None and \
                self.global_dim < index.feature_dim:
            # a version-1 file: its summary is computed, in memory
            index = GalleryIndex(
                index.paths, index.features, index.fingerprint, index.sizes,
                index.mtimes_ns, index.labels, index.root, index.created,
                global_dim=self.global_dim)
        self._indexed = (index, self._make_ranker(index))

    @property
    def index(self) -> Optional[GalleryIndex]:
        """The gallery index searched (None before one is built or loaded);
        assigning one also builds its ranker."""
        return self._indexed[0]

    @index.setter
    def index(self, index: Optional[GalleryIndex]) -> None:
        if index is None:
            self._indexed = (None, None)
        else:
            self._set_index(index)

    def _require_index(self) -> GalleryIndex:
        if self.index is None:
            raise RuntimeError('No gallery index yet: call build_index(folder) '
                               'or load_index(path) first.')
        return self.index

    def set_labels(self, labels: Union[str, Mapping[str, Label],
                                       Sequence[Label]]) -> None:
        """Set the identity labels of the current index's images.

        Args:
            labels: A labels file, a dict ``{path: label}`` (paths absolute
                or relative to the index's gallery folder), or a list with
                one label (or None) per indexed image.
        """
        index = self._require_index()
        if isinstance(labels, Sequence) and not isinstance(labels, str):
            if len(labels) != len(index):
                raise ValueError(f'Got {len(labels)} labels for the '
                                 f'{len(index)} indexed images.')
            index.labels = [None if lab is None else
                            check_label(lab, f'labels[{i}]')
                            for i, lab in enumerate(labels)]
            return
        index.labels = self._apply_label_map(
            index.paths, self._label_map(labels, index.root))

    def save_index(self, path: str) -> str:
        """Save the current index atomically (see
        :meth:`~mdrl_deploy.index.GalleryIndex.save`).

        Args:
            path: Destination file, e.g. ``gallery.npz``.

        Returns:
            The absolute path written.
        """
        return self._require_index().save(path)

    def load_index(self, path: str, check_files: bool = True,
                   mmap: bool = True) -> GalleryIndex:
        """Load an index (written by either searcher) and search it.

        Args:
            path: A file written by :meth:`save_index`.
            check_files: Refuse the index if an image changed or vanished
                since it was built (one ``stat`` per image).
            mmap: Memory-map the features instead of reading them.

        Returns:
            The index.

        Raises:
            IndexMismatchError: If another model (config, checkpoint or
                feature width) made it.
            StaleIndexError: If image files changed or vanished.
            IndexFormatError: If the file is not an index.
        """
        index = GalleryIndex.load(path, mmap=mmap)
        index.check_fingerprint(self.fingerprint, index_path=path)
        if check_files:
            index.check_files(index_path=path)
        self._set_index(index)
        return self.index

    @property
    def num_images(self) -> int:
        """Number of images in the current index (0 without one)."""
        return 0 if self.index is None else len(self.index)

    # ------------------------------------------------------------ search
    def search_features(self, query_feats: Any,
                        topk: int = 10) -> List[List[SearchHit]]:
        """Rank the index for already-encoded queries.

        Args:
            query_feats: ``[T, D]`` L2-normalised query features (NumPy or a
                torch tensor).
            topk: Hits per query; a larger value than the gallery returns
                the whole gallery.

        Returns:
            Per query, the hits in rank order.
        """
        index, ranker = self._indexed
        if index is None:
            self._require_index()
        topk = check_topk(topk)
        feats = _as_array(query_feats)
        if feats.ndim != 2 or feats.shape[1] != index.feature_dim:
            raise ValueError(
                f'Query features must be [T, {index.feature_dim}], got '
                f'{tuple(feats.shape)}')
        if not np.isfinite(feats).all():
            raise ValueError('Query features are not finite (NaN or inf).')
        scores, indices = ranker.search(feats, topk)
        labels = index.labels
        results = []
        for row_s, row_i in zip(np.asarray(scores).tolist(),
                                np.asarray(indices).tolist()):
            hits = []
            for s, i in zip(row_s, row_i):
                if i < 0:  # approximate backends may return fewer hits
                    continue
                hits.append(SearchHit(
                    rank=len(hits) + 1, path=index.paths[i], score=float(s),
                    label=None if labels is None else labels[i], index=int(i)))
            results.append(hits)
        return results

    def search(self, texts: Union[str, Sequence[str]],
               topk: int = 10) -> List[List[SearchHit]]:
        """Rank the gallery for each description.

        Args:
            texts: One description or a list.
            topk: Hits per query; more than the gallery holds returns all.

        Returns:
            One list of :class:`SearchHit` per query, best first.

        Raises:
            RuntimeError: If no index was built or loaded.
            ValueError: For an empty query or a bad ``topk``.
        """
        self._require_index()
        check_topk(topk)
        return self.search_features(self.encode_queries(texts), topk)

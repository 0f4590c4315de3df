"""Text-to-image person search with the exported ONNX graphs, without torch.

:class:`OrtSearcher` is the torch-free twin of
:class:`mdrl_plugin.apis.PersonSearcher`: it needs ``onnxruntime``,
``tokenizers``, NumPy and Pillow (OpenCV when installed, for bit-exact image
resizing), builds, saves and loads the same fingerprinted index files, and
ranks with the same rule (descending cosine, ties by gallery order).
"""
import os
import os.path as osp
import sys
import warnings
from dataclasses import dataclass
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np

from .index import GalleryIndex, file_stat
from .manifest import load_manifest
from .preprocess import ImagePreprocessor, TextTokenizer

__all__ = [
    'OrtSearcher', 'SearchHit', 'IMAGE_EXTENSIONS', 'scan_images',
    'topk_cosine', 'QueryTruncatedWarning', 'SkippedImagesWarning'
]

#: File name endings (lower case) taken as images by a folder scan (the same
#: list as ``mdrl_plugin.apis.IMAGE_EXTENSIONS``).
IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm',
                                     '.pgm', '.pbm', '.tif', '.tiff',
                                     '.webp')
_SHOW = 5
Label = Union[int, str]


class QueryTruncatedWarning(UserWarning):
    """A query is longer than the model's text length and was cut."""


class SkippedImagesWarning(UserWarning):
    """Some gallery files were not indexed (unreadable or not images)."""


@dataclass(frozen=True)
class SearchHit:
    """One ranked gallery image (fields as ``mdrl_plugin.apis.SearchHit``).

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


def scan_images(folder: str) -> Tuple[List[str], List[str]]:
    """``(image files, other files)`` under ``folder``, recursive, sorted.

    The same order as ``mdrl_plugin.apis.scan_images``.
    """
    folder = osp.abspath(folder)
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = osp.join(dirpath, name)
            (images if name.lower().endswith(IMAGE_EXTENSIONS)
             else others).append(path)
    return images, others


def topk_cosine(queries: np.ndarray, gallery: np.ndarray,
                k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``queries @ gallery.T``, best first, ties by index.

    Args:
        queries: ``float32 [T, D]``.
        gallery: ``float32 [N, D]``.
        k: Hits per query (clipped to N).

    Returns:
        ``(scores [T, k'], indices [T, k'])``.
    """
    k = min(int(k), gallery.shape[0])
    sims = queries @ gallery.T
    if k < gallery.shape[0]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(gallery.shape[0]), sims.shape)
    scores = np.take_along_axis(sims, part, axis=1)
    order = np.lexsort((part, -scores), axis=1)
    return (np.take_along_axis(scores, order, axis=1),
            np.take_along_axis(part, order, axis=1))


def _names(items: Sequence[str]) -> str:
    shown = ', '.join(items[:_SHOW])
    if len(items) > _SHOW:
        shown += f', ... ({len(items) - _SHOW} more)'
    return shown


class OrtSearcher:
    """Search a gallery with an export folder and ONNX Runtime.

    Example::

        searcher = OrtSearcher('export/')
        searcher.build_index('photos/')
        for hit in searcher.search('a woman in a red coat', topk=5)[0]:
            print(hit.rank, hit.score, hit.path)

    Args:
        export_dir: Folder written by ``tools/export.py``.
        batch_size: Images encoded per run of the image graph.
        num_threads: ONNX Runtime intra-op threads (None: its default).
        image_backend: ``'cv2'`` (exact), ``'pillow'`` or None (cv2 when
            installed), see :class:`~mdrl_deploy.preprocess.ImagePreprocessor`.
        providers: ONNX Runtime execution providers (default CPU).
        progress: Print encoding progress to stderr.
    """

    def __init__(self,
                 export_dir: str,
                 batch_size: int = 64,
                 num_threads: Optional[int] = None,
                 image_backend: Optional[str] = None,
                 providers: Optional[Sequence[str]] = None,
                 progress: bool = False) -> None:
        import onnxruntime as ort
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.manifest = load_manifest(export_dir)
        self.export_dir = osp.abspath(export_dir)
        files = self.manifest['files']
        opts = ort.SessionOptions()
        if num_threads is not None:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        providers = list(providers or ['CPUExecutionProvider'])
        self.image_session = ort.InferenceSession(files['image'], opts,
                                                  providers=providers)
        self.text_session = ort.InferenceSession(files['text'], opts,
                                                 providers=providers)
        img = self.manifest['image']
        self.preprocessor = ImagePreprocessor(
            img['height'], img['width'], img['mean'], img['std'],
            img['channel_order'], backend=image_backend)
        txt = self.manifest['text']
        self.tokenizer = TextTokenizer(files['tokenizer'], txt['max_length'],
                                       txt.get('pad_token_id', 0))
        self.max_length = int(txt['max_length'])
        self.feature_dim = int(self.manifest['feature']['dim'])
        self.fingerprint: Dict[str, Any] = dict(self.manifest['fingerprint'])
        self.batch_size = int(batch_size)
        self.progress = progress
        self.index: Optional[GalleryIndex] = None

    # ------------------------------------------------------------ encoding
    def encode_image_arrays(self, images: np.ndarray) -> np.ndarray:
        """Features ``float32 [B, D]`` of normalised ``[B, 3, H, W]`` images."""
        return self.image_session.run(
            None, {'images': np.ascontiguousarray(images, np.float32)})[0]

    def encode_images(self, paths: Sequence[str]
                      ) -> Tuple[np.ndarray, List[int], List[Tuple[int, int]],
                                 List[Tuple[str, str]]]:
        """Encode image files in batches, skipping unreadable ones.

        Returns:
            ``(features float32 [M, D], kept positions in paths,
            (size, mtime_ns) of each kept file, [(path, reason)] skipped)``.
        """
        feats, kept, stats, skipped = [], [], [], []
        for start in range(0, len(paths), self.batch_size):
            arrays, idx = [], []
            for i in range(start, min(start + self.batch_size, len(paths))):
                try:
                    stat = file_stat(paths[i])
                    arrays.append(self.preprocessor([paths[i]])[0])
                except Exception as err:  # decoders raise many types
                    msg = str(err).strip().splitlines()[0] if str(err).strip() \
                        else ''
                    skipped.append((paths[i], f'{type(err).__name__}: {msg}'))
                    continue
                idx.append(i)
                stats.append(stat)
            if arrays:
                feats.append(self.encode_image_arrays(np.stack(arrays)))
                kept.extend(idx)
            if self.progress:
                print(f'\rencoded {min(start + self.batch_size, len(paths))}'
                      f'/{len(paths)} images', end='', file=sys.stderr)
        if self.progress and paths:
            print(file=sys.stderr)
        features = (np.concatenate(feats) if feats else
                    np.zeros((0, self.feature_dim), np.float32))
        return features.astype(np.float32), kept, stats, skipped

    def encode_texts(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """L2-normalised query features ``float32 [T, D]``.

        A query longer than ``max_length`` tokens is truncated with a
        :class:`QueryTruncatedWarning`.

        Raises:
            ValueError: If there is no query or one is empty.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError('No query given: pass a description such as '
                             '"a woman in a red coat and black trousers".')
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f'Query texts[{i}] must be a str, got '
                                f'{type(text).__name__}')
            if not text.strip():
                raise ValueError(
                    f'Query texts[{i}] is empty: describe the person, e.g. '
                    '"a woman in a red coat and black trousers".')
        texts = [t.strip() for t in texts]
        for i, n in enumerate(self.tokenizer.lengths(texts)):
            if n > self.max_length:
                warnings.warn(
                    f'Query texts[{i}] has {n} tokens but the model reads at '
                    f'most {self.max_length} ([CLS] and [SEP] included): the '
                    f'last {n - self.max_length} tokens are ignored.',
                    QueryTruncatedWarning, stacklevel=2)
        feats = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(texts[start:start + self.batch_size])
            feats.append(self.text_session.run(None, tok)[0])
        return np.concatenate(feats).astype(np.float32)

    # ------------------------------------------------------------ index
    def build_index(self,
                    image_paths_or_folder: Union[str, Sequence[str]],
                    labels: Union[None, Mapping[str, Label],
                                  Sequence[Optional[Label]]] = None
                    ) -> GalleryIndex:
        """Encode a gallery and make it the searched index.

        Args:
            image_paths_or_folder: A folder (scanned recursively) or a list
                of image files.
            labels: Optional identity labels: a dict ``{path: label}`` (paths
                absolute or relative to the folder) or, for a list of files,
                one label per file.

        Returns:
            The :class:`~mdrl_deploy.index.GalleryIndex`, in the format of
            ``PersonSearcher.save_index``.
        """
        root = None
        others: List[str] = []
        if isinstance(image_paths_or_folder, (str, os.PathLike)) and \
                osp.isdir(image_paths_or_folder):
            root = osp.abspath(str(image_paths_or_folder))
            paths, others = scan_images(root)
            where = f'folder {str(image_paths_or_folder)!r}'
        else:
            sources = [image_paths_or_folder] if isinstance(
                image_paths_or_folder, (str, os.PathLike)) else \
                list(image_paths_or_folder)
            for src in sources:
                if not osp.isfile(src):
                    raise FileNotFoundError(
                        f'Gallery path {str(src)!r} does not exist (expected '
                        'an image file or a folder of images).')
            paths = [osp.abspath(str(s)) for s in sources]
            where = f'the {len(paths)} given paths'
        if not paths:
            raise ValueError(f'No image files in {where}; expected files '
                             f'ending in {", ".join(IMAGE_EXTENSIONS)}.')
        label_list: Optional[List[Optional[Label]]] = None
        if labels is not None:
            if isinstance(labels, Mapping):
                norm = {osp.normpath(k if osp.isabs(k) else
                                     osp.join(root or '', k)): v
                        for k, v in labels.items()}
                label_list = [norm.get(osp.normpath(p)) for p in paths]
            else:
                if root is not None or len(labels) != len(paths):
                    raise ValueError(
                        'A list of labels needs a list of image files of the '
                        f'same length (got {len(labels)} labels for '
                        f'{len(paths)} images); for a folder pass a dict.')
                label_list = list(labels)
        features, kept, stats, skipped = self.encode_images(paths)
        if skipped or others:
            warnings.warn(
                f'Skipped {len(skipped) + len(others)} files in {where}: ' +
                _names([f'{p} ({why})' for p, why in skipped] + others),
                SkippedImagesWarning, stacklevel=2)
        if not kept:
            raise ValueError(f'No readable image in {where}: all '
                             f'{len(paths)} image files failed to load.')
        fingerprint = dict(self.fingerprint, encoder='onnxruntime')
        self.index = GalleryIndex(
            paths=[paths[i] for i in kept], features=features,
            fingerprint=fingerprint, sizes=[s[0] for s in stats],
            mtimes_ns=[s[1] for s in stats],
            labels=None if label_list is None else
            [label_list[i] for i in kept], root=root)
        return self.index

    def save_index(self, path: str) -> str:
        """Save the current index atomically; returns the absolute path."""
        return self._require_index().save(path)

    def load_index(self, path: str, check_files: bool = True) -> GalleryIndex:
        """Load an index written by this class or by ``PersonSearcher``.

        Raises:
            IndexMismatchError: If another model made it.
            StaleIndexError: If image files changed or vanished.
            IndexFormatError: If the file is not an index.
        """
        index = GalleryIndex.load(path)
        index.check_fingerprint(self.fingerprint, index_path=path)
        if check_files:
            index.check_files(index_path=path)
        self.index = index
        return index

    def _require_index(self) -> GalleryIndex:
        if self.index is None:
            raise RuntimeError('No gallery index yet: call build_index(folder) '
                               'or load_index(path) first.')
        return self.index

    @property
    def num_images(self) -> int:
        """Number of images in the current index (0 without one)."""
        return 0 if self.index is None else len(self.index)

    # ------------------------------------------------------------ search
    def search_features(self, query_feats: np.ndarray, topk: int = 10
                        ) -> List[List[SearchHit]]:
        """Rank the index for already-encoded ``[T, D]`` queries."""
        index = self._require_index()
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) \
                or topk < 1:
            raise ValueError(f'topk must be a positive int, got {topk!r}')
        if query_feats.ndim != 2 or query_feats.shape[1] != index.feature_dim:
            raise ValueError(f'Query features must be [T, {index.feature_dim}]'
                             f', got {tuple(query_feats.shape)}')
        scores, indices = topk_cosine(query_feats.astype(np.float32),
                                      index.features, topk)
        labels = index.labels
        return [[SearchHit(rank=r + 1, path=index.paths[i], score=float(s),
                           label=None if labels is None else labels[i],
                           index=int(i))
                 for r, (s, i) in enumerate(zip(row_s.tolist(),
                                                row_i.tolist()))]
                for row_s, row_i in zip(scores, indices)]

    def search(self, texts: Union[str, Sequence[str]],
               topk: int = 10) -> List[List[SearchHit]]:
        """Rank the gallery for each description (best first).

        Raises:
            RuntimeError: If no index was built or loaded.
            ValueError: For an empty query or a bad ``topk``.
        """
        self._require_index()
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) \
                or topk < 1:
            raise ValueError(f'topk must be a positive int, got {topk!r}')
        return self.search_features(self.encode_texts(texts), topk)

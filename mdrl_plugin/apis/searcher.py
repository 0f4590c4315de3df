"""Text-to-image person search over any folder of images."""
import copy
import os
import os.path as osp
import sys
import warnings
from dataclasses import dataclass
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from .index import (GalleryIndex, config_sha256, file_sha256, file_stat)
from .labels import Label, check_label, load_labels, resolve_label_map
from .ranking import build_ranker

__all__ = [
    'PersonSearcher', 'SearchHit', 'IMAGE_EXTENSIONS', 'scan_images',
    'SkippedImagesWarning', 'QueryTruncatedWarning', 'UnmatchedLabelsWarning'
]

#: File name endings (lower case) taken as images by a folder scan.
IMAGE_EXTENSIONS: Tuple[str, ...] = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm',
                                     '.pgm', '.pbm', '.tif', '.tiff',
                                     '.webp')
#: How many file names a warning lists.
_SHOW = 5


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


def _list_collate(batch: list) -> list:
    return batch


class _ImageFiles(torch.utils.data.Dataset):
    """Runs the test pipeline on each file; reports failures, never raises."""

    def __init__(self, paths: Sequence[str], pipeline: Compose) -> None:
        self.paths = list(paths)
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            stat = file_stat(path)
            out = self.pipeline(dict(img_path=path))
            if out is None:
                raise ValueError('the test pipeline dropped it')
            inputs = out['inputs']
            if not isinstance(inputs, torch.Tensor) or inputs.ndim != 3:
                raise ValueError('the test pipeline gave no C x H x W image '
                                 'tensor in "inputs"')
            return i, inputs, stat, None
        except Exception as err:  # decoders raise many types
            msg = str(err).strip().splitlines()[0] if str(err).strip() else ''
            return i, None, None, f'{type(err).__name__}: {msg}'[:200]


def _names(items: Sequence[str]) -> str:
    shown = ', '.join(items[:_SHOW])
    if len(items) > _SHOW:
        shown += f', ... ({len(items) - _SHOW} more)'
    return shown


class PersonSearcher:
    """Search a gallery of person images with natural-language descriptions.

    The model and its test pipeline come from an MMEngine config; the
    weights from a checkpoint. Gallery images are encoded once into an
    in-memory ``float32 [N, D]`` index (which can be saved and reloaded);
    a query is encoded by the text branch and ranked with one matrix product
    plus top-k.

    Example::

        searcher = PersonSearcher('configs/mdrl_demo.py', 'epoch_10.pth')
        searcher.build_index('photos/')
        for hit in searcher.search('a woman in a red coat', topk=5)[0]:
            print(hit.rank, hit.score, hit.path)

    Args:
        config: Config file or :class:`mmengine.Config` (or dict) with
            ``model`` and the test pipeline in
            ``test_dataloader.dataset.pipeline`` (or ``test_pipeline``).
        checkpoint: Checkpoint file of the model (MMEngine format, weights in
            ``state_dict``).
        device: Torch device of the model and the index, e.g. ``'cpu'`` or
            ``'cuda:0'``.
        batch_size: Images (and captions) encoded per forward pass.
        num_workers: Worker processes that load gallery images (0: in this
            process).
        backend: ``'torch'`` (exact; default) or ``'faiss'`` (needs the
            optional ``faiss`` package).
        backend_options: Options of the backend (FAISS: ``factory``,
            ``nprobe``).
        progress: Show a progress bar (on stderr) while encoding a gallery.
        allow_partial_checkpoint: Load a checkpoint whose keys or shapes do
            not all match the model (what does not fit keeps its random
            initialisation and is logged); by default it is refused with
            :class:`~mdrl_plugin.engine.CheckpointMismatchError`.
    """

    def __init__(self,
                 config: Union[str, Config, dict],
                 checkpoint: str,
                 device: str = 'cpu',
                 batch_size: int = 64,
                 num_workers: int = 0,
                 backend: str = 'torch',
                 backend_options: Optional[Dict[str, Any]] = None,
                 progress: bool = True,
                 allow_partial_checkpoint: bool = False) -> None:
        import mdrl_plugin  # noqa: F401  (registers the components)
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if num_workers < 0:
            raise ValueError(f'num_workers must be >= 0, got {num_workers}')
        if backend not in ('torch', 'faiss'):
            raise ValueError(f"backend must be 'torch' or 'faiss', got "
                             f'{backend!r}')
        if str(device).startswith('cuda') and not torch.cuda.is_available():
            raise ValueError(f'device {device!r} was requested but CUDA is not '
                             "available here; use device='cpu'")
        if isinstance(config, (str, os.PathLike)):
            if not osp.isfile(config):
                raise FileNotFoundError(f'Config file {str(config)!r} does not '
                                        'exist.')
            cfg = Config.fromfile(str(config))
        elif isinstance(config, Config):
            cfg = config
        elif isinstance(config, dict):
            cfg = Config(config)
        else:
            raise TypeError('config must be a file path, an mmengine Config or '
                            f'a dict, got {type(config).__name__}')
        self.cfg = cfg
        self.config_name = cfg.filename or '<Config object>'
        if 'model' not in cfg:
            raise KeyError(f'Config {self.config_name!r} has no "model".')
        if not isinstance(checkpoint, (str, os.PathLike)) or \
                not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'Checkpoint file {checkpoint!r} does not exist; pass the '
                '.pth file written by training (e.g. work_dirs/<config>/'
                'epoch_N.pth).')
        self.checkpoint = osp.abspath(str(checkpoint))
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.backend = backend
        self.backend_options = dict(backend_options or {})
        self.progress = progress
        self.allow_partial_checkpoint = allow_partial_checkpoint
        self.scope = cfg.get('default_scope', 'mdrl_plugin')

        pipeline_cfg = self._pipeline_cfg(cfg)
        with DefaultScope.overwrite_default_scope(self.scope):
            self.model = self._build_model(cfg)
            try:
                self.pipeline = Compose(copy.deepcopy(pipeline_cfg))
            except Exception as err:
                raise ValueError(
                    f'Config {self.config_name!r}: cannot build the test '
                    f'pipeline {pipeline_cfg}: {type(err).__name__}: {err}'
                ) from err
        self.data_preprocessor = self.model.data_preprocessor
        with torch.no_grad():
            probe = self.data_preprocessor.tokenize(['a person'])
            self.feature_dim = int(self.model.extract_text_feat(
                probe['input_ids'], probe['attention_mask']).shape[1])
        self.fingerprint: Dict[str, Any] = dict(
            config_sha256=config_sha256(dict(
                model=cfg.model.to_dict() if hasattr(cfg.model, 'to_dict')
                else cfg.model,
                pipeline=[dict(t) for t in pipeline_cfg])),
            checkpoint_sha256=file_sha256(self.checkpoint),
            feature_dim=self.feature_dim,
            config=self.config_name,
            checkpoint=self.checkpoint)
        self.index: Optional[GalleryIndex] = None
        self._ranker = None

    # ------------------------------------------------------------ set-up
    def _pipeline_cfg(self, cfg: Config) -> list:
        pipeline = None
        try:
            pipeline = cfg.test_dataloader.dataset.pipeline
        except AttributeError:
            pipeline = cfg.get('test_pipeline')
        if not pipeline:
            raise KeyError(
                f'Config {self.config_name!r} has no test pipeline: set '
                'test_dataloader.dataset.pipeline (or test_pipeline) to e.g. '
                "[dict(type='LoadImageFromFile'), dict(type='Resize', "
                "scale=(128, 384), keep_ratio=False), "
                "dict(type='PackTextImageInputs')]")
        return [t.to_dict() if hasattr(t, 'to_dict') else dict(t)
                for t in pipeline]

    def _build_model(self, cfg: Config) -> torch.nn.Module:
        from mdrl_plugin.engine import load_model_weights
        from mdrl_plugin.registry import MODELS
        model_cfg = copy.deepcopy(cfg.model)
        # The checkpoint holds every weight: do not read the ImageNet weights.
        enc = model_cfg.get('image_encoder')
        if isinstance(enc, dict) and enc.get('pretrained') is not None:
            enc['pretrained'] = None
        model = MODELS.build(model_cfg)
        load_model_weights(model, self.checkpoint, config=self.config_name,
                           allow_partial=self.allow_partial_checkpoint)
        return model.to(self.device).eval()

    # ------------------------------------------------------------ encoding
    @torch.no_grad()
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
        from mmengine.utils import ProgressBar
        loader = torch.utils.data.DataLoader(
            _ImageFiles(paths, self.pipeline), batch_size=self.batch_size,
            shuffle=False, num_workers=self.num_workers,
            collate_fn=_list_collate)
        bar = ProgressBar(len(paths), file=sys.stderr) \
            if self.progress and len(paths) else None
        feats, kept, stats, skipped = [], [], [], []
        for batch in loader:
            good = [b for b in batch if b[3] is None]
            skipped.extend((paths[b[0]], b[3]) for b in batch
                           if b[3] is not None)
            if good:
                images = self.data_preprocessor.preprocess_images(
                    [b[1] for b in good])
                out = self.model.extract_image_feat(images)
                feats.append(out.float().cpu().numpy())
                kept.extend(b[0] for b in good)
                stats.extend(b[2] for b in good)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.file.write('\n')
        features = (np.concatenate(feats) if feats else
                    np.zeros((0, self.feature_dim), np.float32))
        return features.astype(np.float32), kept, stats, skipped

    def _check_queries(self, texts: Union[str, Sequence[str]]) -> List[str]:
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
        return [t.strip() for t in texts]

    @torch.no_grad()
    def encode_texts(self, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """L2-normalised features of queries.

        A query longer than the model's text length (``max_length`` of the
        data preprocessor, [CLS] and [SEP] included) is truncated with a
        :class:`QueryTruncatedWarning`.

        Args:
            texts: One query or a list.

        Returns:
            ``float32 [T, D]`` on the searcher's device.

        Raises:
            ValueError: If there is no query or one is empty/whitespace.
        """
        texts = self._check_queries(texts)
        dp = self.data_preprocessor
        for i, n in enumerate(dp.text_lengths(texts)):
            if n > dp.max_length:
                short = texts[i] if len(texts[i]) <= 60 else \
                    texts[i][:57] + '...'
                warnings.warn(
                    f'Query texts[{i}] ("{short}") has {n} tokens but the '
                    f'model reads at most {dp.max_length} (max_length of the '
                    f'config, [CLS] and [SEP] included): the last '
                    f'{n - dp.max_length} tokens are ignored.',
                    QueryTruncatedWarning, stacklevel=3)
        feats = []
        for start in range(0, len(texts), self.batch_size):
            tok = dp.tokenize(texts[start:start + self.batch_size])
            feats.append(self.model.extract_text_feat(
                tok['input_ids'], tok['attention_mask']).float())
        return torch.cat(feats)

    # ------------------------------------------------------------ index
    def _label_map(self, labels, root: Optional[str]) -> Dict[str, Label]:
        if isinstance(labels, (str, os.PathLike)):
            return load_labels(str(labels), root)
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
                :func:`~mdrl_plugin.apis.load_labels`), a dict
                ``{path: label}`` (paths absolute or relative to the gallery
                folder), or, for a list of image files, a list of labels in
                the same order.

        Returns:
            The new :class:`GalleryIndex` (also kept as ``self.index``).

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
        if label_list is not None:
            final_labels = [label_list[i] for i in kept]
        elif label_map is not None:
            final_labels = self._apply_label_map(kept_paths, label_map)
        else:
            final_labels = None
        index = GalleryIndex(
            paths=kept_paths, features=features,
            fingerprint=dict(self.fingerprint),
            sizes=[s[0] for s in stats], mtimes_ns=[s[1] for s in stats],
            labels=final_labels, root=root)
        self._set_index(index)
        return index

    def _set_index(self, index: GalleryIndex) -> None:
        self._ranker = build_ranker(
            self.backend, index.features, device=str(self.device),
            **self.backend_options)
        self.index = index

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
        """Save the current index atomically (see :meth:`GalleryIndex.save`).

        Args:
            path: Destination file, e.g. ``gallery.npz``.

        Returns:
            The absolute path written.
        """
        return self._require_index().save(path)

    def load_index(self, path: str, check_files: bool = True) -> GalleryIndex:
        """Load an index and make it the searched one.

        Args:
            path: A file written by :meth:`save_index`.
            check_files: Refuse the index if an image changed or vanished
                since it was built (one ``stat`` per image).

        Returns:
            The index.

        Raises:
            IndexMismatchError: If another model (config, checkpoint or
                feature width) made it.
            StaleIndexError: If image files changed or vanished.
            IndexFormatError: If the file is not an index.
        """
        index = GalleryIndex.load(path)
        index.check_fingerprint(self.fingerprint, index_path=path)
        if check_files:
            index.check_files(index_path=path)
        self._set_index(index)
        return index

    # ------------------------------------------------------------ search
    def search_features(self, query_feats: torch.Tensor, topk: int = 10
                        ) -> List[List[SearchHit]]:
        """Rank the index for already-encoded queries.

        Args:
            query_feats: ``[T, D]`` L2-normalised query features.
            topk: Hits per query; a larger value than the gallery returns
                the whole gallery.

        Returns:
            Per query, the hits in rank order.
        """
        index = self._require_index()
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) \
                or topk < 1:
            raise ValueError(f'topk must be a positive int, got {topk!r}')
        if query_feats.ndim != 2 or query_feats.shape[1] != index.feature_dim:
            raise ValueError(
                f'Query features must be [T, {index.feature_dim}], got '
                f'{tuple(query_feats.shape)}')
        scores, indices = self._ranker.search(query_feats, int(topk))
        labels = index.labels
        results = []
        for row_s, row_i in zip(scores.tolist(), indices.tolist()):
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
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) \
                or topk < 1:
            raise ValueError(f'topk must be a positive int, got {topk!r}')
        return self.search_features(self.encode_texts(texts), topk)

    @property
    def num_images(self) -> int:
        """Number of images in the current index (0 without one)."""
        return 0 if self.index is None else len(self.index)

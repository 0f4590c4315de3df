"""Text-to-image person search over any folder of images, with PyTorch.

Only the encoders are here: the index, labels, query checks, warnings and
ranking are :class:`mdrl_deploy.search.GallerySearcher`'s, shared with the
torch-free :class:`mdrl_deploy.OrtSearcher`.
"""
import copy
import os
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from mdrl_deploy.search import (IMAGE_EXTENSIONS, GallerySearcher,
                                QueryTruncatedWarning, SearchHit,
                                SkippedImagesWarning, UnmatchedLabelsWarning,
                                scan_images, skip_reason)
from .index import GalleryIndex, config_sha256, file_sha256, file_stat
from .ranking import RANKERS, build_ranker

__all__ = [
    'PersonSearcher', 'SearchHit', 'IMAGE_EXTENSIONS', 'scan_images',
    'SkippedImagesWarning', 'QueryTruncatedWarning', 'UnmatchedLabelsWarning'
]


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
            return i, None, None, skip_reason(err)


class PersonSearcher(GallerySearcher):
    """Search a gallery of person images with natural-language descriptions.

    The model and its test pipeline come from an MMEngine config; the
    weights from a checkpoint. Gallery images are encoded once into a
    ``float32 [N, D]`` index (which can be saved, and is memory-mapped when
    reloaded); a query is encoded by the text branch and ranked (see
    :class:`mdrl_deploy.ranking.Ranker`).

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
        backend: ``'numpy'`` (default; the ranking of both search paths),
            ``'torch'`` (exact, on ``device``) or ``'faiss'`` (needs the
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
                 backend: str = 'numpy',
                 backend_options: Optional[Dict[str, Any]] = None,
                 progress: bool = True,
                 allow_partial_checkpoint: bool = False) -> None:
        import mdrl_plugin  # noqa: F401  (registers the components)
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        if num_workers < 0:
            raise ValueError(f'num_workers must be >= 0, got {num_workers}')
        if backend not in RANKERS:
            raise ValueError(f'backend must be one of {sorted(RANKERS)}, got '
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
        local = getattr(self.model, 'image_local', None)
        self.global_dim = self.feature_dim // (local.num_groups + 1) if \
            getattr(self.model, 'retrieval_features', 'global') == \
            'global+local' and hasattr(local, 'num_groups') else None
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

    @property
    def max_length(self) -> int:
        """Text length of the model (the data preprocessor's)."""
        return int(self.data_preprocessor.max_length)

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
        """:meth:`GallerySearcher.encode_images` with the config's test
        pipeline (in a ``DataLoader`` with ``num_workers``) and the model."""
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

    def _token_lengths(self, texts: List[str]) -> List[int]:
        return self.data_preprocessor.text_lengths(texts)

    @torch.no_grad()
    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        tok = self.data_preprocessor.tokenize(texts)
        return self.model.extract_text_feat(
            tok['input_ids'], tok['attention_mask']).float().cpu().numpy()

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
        return torch.from_numpy(self.encode_queries(texts)).to(self.device)

    # ------------------------------------------------------------ index
    def _make_ranker(self, index: GalleryIndex):
        return build_ranker(self.backend, index.features,
                            device=str(self.device),
                            summary=index.summary, spread=index.spread,
                            **self.backend_options)

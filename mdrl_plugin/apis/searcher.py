"""Text-to-image person search with PyTorch: :func:`build_retrieval_model`
(for search and export) and :class:`PersonSearcher`, the encoders of a
:class:`mdrl_deploy.search.GallerySearcher`."""
import copy
import os
import os.path as osp
from typing import Any, Dict, List, NamedTuple, Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

from mdrl_deploy.index import config_sha256, file_sha256
from mdrl_deploy.search import GallerySearcher


class RetrievalModel(NamedTuple):
    """What :func:`build_retrieval_model` gives.

    Args:
        model: The MDRL model in eval mode, weights loaded strictly.
        cfg: The config.
        pipeline: The test pipeline's transform configs (plain dicts).
        fingerprint: What index folders and exports are matched by.
        global_dim: Global width of ``global+local`` features, else None.
    """
    model: torch.nn.Module
    cfg: Config
    pipeline: List[dict]
    fingerprint: Dict[str, Any]
    global_dim: Optional[int]


def build_retrieval_model(cfg: Union[str, Config, dict], checkpoint: str,
                          device: str = 'cpu',
                          allow_partial: bool = False) -> RetrievalModel:
    """Build a config's model and load a checkpoint strictly (the image
    encoder's ``pretrained`` weights are not read: the checkpoint has all).

    Args:
        cfg: Config file, :class:`mmengine.Config` or dict with ``model``
            and ``test_dataloader.dataset.pipeline`` (or ``test_pipeline``).
        checkpoint: Checkpoint file (MMEngine format).
        device: Torch device of the model.
        allow_partial: Load what fits (the rest logged) instead of raising.

    Returns:
        :class:`RetrievalModel`.
    """
    import mdrl_plugin  # noqa: F401  (registers the components)
    from mdrl_plugin.engine import load_model_weights
    from mdrl_plugin.registry import MODELS
    if isinstance(cfg, (str, os.PathLike)):
        if not osp.isfile(cfg):
            raise FileNotFoundError(f'Config file {str(cfg)!r} does not '
                                    'exist.')
        cfg = Config.fromfile(str(cfg))
    elif not isinstance(cfg, Config):
        cfg = Config(cfg)
    name = cfg.filename or '<Config object>'
    if 'model' not in cfg:
        raise KeyError(f'Config {name!r} has no "model".')
    try:
        pipeline = cfg.test_dataloader.dataset.pipeline
    except AttributeError:
        pipeline = cfg.get('test_pipeline')
    if not pipeline:
        raise KeyError(
            f'Config {name!r} has no test pipeline: set '
            'test_dataloader.dataset.pipeline (or test_pipeline) to e.g. '
            "[dict(type='LoadImageFromFile'), dict(type='Resize', "
            "scale=(128, 384), keep_ratio=False), "
            "dict(type='PackTextImageInputs')]")
    pipeline = [t.to_dict() if hasattr(t, 'to_dict') else dict(t)
                for t in pipeline]
    checkpoint = osp.abspath(checkpoint)
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('image_encoder'), dict):
        model_cfg['image_encoder']['pretrained'] = None
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mdrl_plugin')):
        model = MODELS.build(model_cfg)
    load_model_weights(model, checkpoint, config=name,
                       allow_partial=allow_partial)
    model = model.to(device).eval()
    with torch.no_grad():
        probe = model.data_preprocessor.tokenize(['a person'])
        dim = int(model.extract_text_feat(probe['input_ids'],
                                          probe['attention_mask']).shape[1])
    global_dim = dim // (model.image_local.num_groups + 1) \
        if model.retrieval_features == 'global+local' else None
    fingerprint = dict(
        config_sha256=config_sha256(dict(model=cfg.model.to_dict(),
                                         pipeline=pipeline)),
        checkpoint_sha256=file_sha256(checkpoint), feature_dim=dim,
        config=name, checkpoint=checkpoint)
    return RetrievalModel(model, cfg, pipeline, fingerprint, global_dim)


class PersonSearcher(GallerySearcher):
    """Search a gallery of person images with natural-language descriptions.

    Example::

        searcher = PersonSearcher('configs/mdrl_demo.py', 'epoch_10.pth')
        searcher.build_index('photos/')
        hits = searcher.search('a woman in a red coat', topk=5)[0]

    Args:
        config: Config file, Config or dict (:func:`build_retrieval_model`).
        checkpoint: Checkpoint file of the model.
        device: Torch device of the model, e.g. ``'cpu'`` or ``'cuda:0'``.
        batch_size: Images (and captions) encoded per forward pass.
        num_workers: Threads that read gallery images (0: none).
        progress: Print encoding progress to stderr.
        allow_partial_checkpoint: Load what fits (see build_retrieval_model).
    """

    def __init__(self,
                 config: Union[str, Config, dict],
                 checkpoint: str,
                 device: str = 'cpu',
                 batch_size: int = 64,
                 num_workers: int = 0,
                 progress: bool = True,
                 allow_partial_checkpoint: bool = False) -> None:
        self._set_encoding(batch_size, num_workers, progress)
        if str(device).startswith('cuda') and not torch.cuda.is_available():
            raise ValueError(f'device {device!r} was requested but CUDA is '
                             "not available here; use device='cpu'")
        built = build_retrieval_model(config, checkpoint, device,
                                      allow_partial_checkpoint)
        self.model, self.cfg = built.model, built.cfg
        self.fingerprint = built.fingerprint
        self.feature_dim = built.fingerprint['feature_dim']
        self.global_dim = built.global_dim
        self.data_preprocessor = self.model.data_preprocessor
        self.max_length = int(self.data_preprocessor.max_length)
        with DefaultScope.overwrite_default_scope(
                self.cfg.get('default_scope', 'mdrl_plugin')):
            try:
                self.pipeline = Compose(copy.deepcopy(built.pipeline))
            except Exception as err:
                raise ValueError(
                    f'Config {built.fingerprint["config"]!r}: cannot build '
                    f'the test pipeline {built.pipeline}: '
                    f'{type(err).__name__}: {err}') from err

    def _read_image(self, path: str) -> torch.Tensor:
        out = self.pipeline(dict(img_path=path))
        image = None if out is None else out.get('inputs')
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError('the test pipeline gave no C x H x W image '
                             'tensor in "inputs"')
        return image

    @torch.no_grad()
    def _encode_images(self, images: List[torch.Tensor]) -> np.ndarray:
        return self.model.extract_image_feat(
            self.data_preprocessor.preprocess_images(images)
        ).float().cpu().numpy()

    def _token_lengths(self, texts: List[str]) -> List[int]:
        return self.data_preprocessor.text_lengths(texts)

    @torch.no_grad()
    def _encode_texts(self, texts: List[str]) -> np.ndarray:
        tok = self.data_preprocessor.tokenize(texts)
        return self.model.extract_text_feat(
            tok['input_ids'], tok['attention_mask']).float().cpu().numpy()

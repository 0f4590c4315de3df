"""Any registered backbone or timm model as MDRL's image encoder."""
import importlib.util
import inspect
from typing import Any, Optional, Sequence, Tuple

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS

from ..weights import image_source

__all__ = ['BackboneAdapter', 'read_tokens', 'create_timm_model']


def _describe(out: Any) -> str:
    """Shapes of a backbone output, e.g. ``'tuple[(2, 192)]'``."""
    if isinstance(out, torch.Tensor):
        return str(tuple(out.shape))
    if isinstance(out, (tuple, list)):
        return f'{type(out).__name__}[{", ".join(_describe(o) for o in out)}]'
    return type(out).__name__


def read_tokens(out: Any,
                num_prefix_tokens: int = 0,
                channels_last: bool = False
                ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Read a backbone output as a global feature and a token sequence.

    A pair ``(global [B, C], tokens [B, N, C])`` as it is; other tuples from
    their last element; a map ``[B, C, h, w]`` as ``h * w`` tokens and their
    mean; a sequence ``[B, L, C]`` as the tokens after the prefix tokens and
    the first ([cls]) or, without prefix, the mean (docs/models.md).

    Args:
        out: The backbone output.
        num_prefix_tokens: Leading non-patch tokens of a ``[B, L, C]`` output.
        channels_last: A 4-D map is ``[B, h, w, C]`` (timm's NHWC models).

    Returns:
        ``(global [B, C], tokens [B, N, C])``, or None if ``out`` cannot be
        read this way.
    """
    if isinstance(out, (tuple, list)):
        if (len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)
                and out[0].dim() == 2 and out[1].dim() == 3
                and out[0].shape[-1] == out[1].shape[-1]):
            return out[0], out[1]
        return (read_tokens(out[-1], num_prefix_tokens, channels_last)
                if out else None)
    if not isinstance(out, torch.Tensor):
        return None
    if out.dim() == 4:
        tokens = (out.flatten(1, 2) if channels_last else
                  out.flatten(2).transpose(1, 2))
        return tokens.mean(dim=1), tokens
    if out.dim() == 3 and out.shape[1] > num_prefix_tokens:
        tokens = out[:, num_prefix_tokens:]
        global_feat = out[:, 0] if num_prefix_tokens else tokens.mean(dim=1)
        return global_feat, tokens
    return None


def create_timm_model(arch: str, weights: Optional[str] = None,
                      what: str = 'weights', **kwargs) -> nn.Module:
    """A timm model without classifier, its pretrained weights loaded strictly.

    timm reads the file (``state_dict``/``module.`` unwrapped, no EMA), the
    classifier of its ``pretrained_cfg`` is dropped, and ``create_model(
    pretrained=True, pretrained_cfg_overlay=...)`` filters (a ViT's position
    embeddings resampled) and loads it with ``strict=True``.

    Args:
        arch: timm model name.
        weights: None (timm's initialisation), or a local file, a timm tag of
            ``arch`` or a URL (:func:`mdrl_plugin.models.image_source`).
        what: Words for messages, e.g. ``'ViT pretrained weights'``.
        **kwargs: Other arguments of ``timm.create_model``.

    Returns:
        The model, created with ``num_classes=0``.

    Raises:
        WeightsNotFoundError: The weights are not here and cannot be fetched.
        ValueError: They do not fit the model; the message names the file and
            the missing, unexpected or wrong-shaped keys.
    """
    if weights is None:
        return timm.create_model(arch, num_classes=0, **kwargs)
    from timm.models import get_pretrained_cfg, load_state_dict
    path = image_source(weights, arch, what).resolve()
    state = load_state_dict(path, use_ema=False)
    heads = getattr(get_pretrained_cfg(arch), 'classifier', None) or ()
    for head in (heads, ) if isinstance(heads, str) else heads:
        for key in (f'{head}.weight', f'{head}.bias'):
            state.pop(key, None)
    overlay = dict(state_dict=state, num_classes=0)  # timm keeps strict=True
    try:
        return timm.create_model(arch, pretrained=True, num_classes=0,
                                 pretrained_cfg_overlay=overlay, **kwargs)
    except RuntimeError as err:
        raise ValueError(
            f"{what} {path!r} do not fit the model (timm's "
            f'strict load, the classifier dropped): {err}') from err
    finally:
        state.clear()  # the model's pretrained_cfg keeps a reference


@MODELS.register_module()
class BackboneAdapter(BaseModule):
    """Turn any registered backbone or timm model into MDRL's image encoder.

    The backbone (called as ``backbone(images)``) or timm model (created with
    ``num_classes=0``, called through ``forward_features``) is read with
    :func:`read_tokens` into a global feature ``[B, C]`` and tokens
    ``[B, N, C]``. One forward of a zero image of ``probe_size`` at build
    time finds ``out_channels`` and fails early, naming the shapes, on an
    output that cannot be read. A registered backbone loads its weights
    through its own ``init_cfg``; a timm model loads ``timm_checkpoint``
    strictly (:func:`create_timm_model`). See docs/models.md.

    Args:
        backbone: Config of a registered backbone (or ``timm_model``).
        timm_model: timm model name, e.g. ``'resnet18'``.
        timm_kwargs: Extra arguments of ``timm.create_model``.
        timm_checkpoint: A local file, a timm tag of ``timm_model``
            (``'timm'``: the default tag) or an ``http(s)://`` URL.
        out_channels: If set, a linear projection of both outputs to it.
        probe_size: ``(H, W)`` of the probe image (the training size when the
            backbone accepts only one size).
        with_cp: Activation checkpointing, passed on: timm's
            ``set_grad_checkpointing`` (in training only), or ``with_cp=True``
            in the backbone's config; a ``ValueError`` at build time if the
            backbone supports neither. Defaults to False.
        init_cfg: MMEngine init config of the adapter.
    """

    def __init__(self,
                 backbone: Optional[dict] = None,
                 timm_model: Optional[str] = None,
                 timm_kwargs: Optional[dict] = None,
                 timm_checkpoint: Optional[str] = None,
                 out_channels: Optional[int] = None,
                 probe_size: Sequence[int] = (224, 224),
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if (backbone is None) == (timm_model is None):
            raise ValueError('BackboneAdapter needs exactly one of `backbone` '
                             '(a registered backbone config) and `timm_model` '
                             '(a timm model name)')
        if timm_model is None and (timm_kwargs or timm_checkpoint):
            raise ValueError(
                'BackboneAdapter: timm_kwargs and timm_checkpoint '
                'apply to `timm_model` only; a registered backbone '
                'takes its arguments and init_cfg in `backbone`')
        self.from_timm = timm_model is not None
        self.with_cp = with_cp
        if self.from_timm:
            self.backbone = create_timm_model(
                timm_model, timm_checkpoint, f'timm {timm_model!r} weights',
                **(timm_kwargs or {}))
            # timm initialises (and loads) its models at construction;
            # MMEngine's init_weights skips modules marked as initialised
            self.backbone.is_init = True
            self.backbone_type = f'timm {timm_model!r}'
            if with_cp:
                self._check_timm_checkpointing()
        else:
            name = backbone['type']
            self.backbone_type = (name if isinstance(name, str) else
                                  name.__name__)
            scope = (name.split('.')[0]
                     if isinstance(name, str) and '.' in name else None)
            if scope is not None and importlib.util.find_spec(scope) is None:
                raise ImportError(
                    f'BackboneAdapter: backbone type {name!r} comes from the '
                    f'package {scope!r}, which is not installed (for '
                    "mmpretrain: pip install -e '.[mmpretrain]')")
            if with_cp:
                backbone = self._with_cp_config(backbone)
            self.backbone = MODELS.build(backbone)
        # mmpretrain's and timm's names; timm's NHWC maps (e.g. Swin)
        self.num_prefix_tokens = getattr(self.backbone, 'num_extra_tokens',
                                         getattr(self.backbone,
                                                 'num_prefix_tokens', 0))
        self.channels_last = getattr(self.backbone, 'output_fmt', '') == 'NHWC'
        self.embed_dims = self._probe(tuple(probe_size))
        self.proj = (nn.Linear(self.embed_dims, out_channels)
                     if out_channels else nn.Identity())
        self.out_channels = out_channels or self.embed_dims

    def _check_timm_checkpointing(self) -> None:
        """Fail now if the timm model cannot checkpoint its activations."""
        try:  # timm models without support lack it, assert or raise here
            self.backbone.set_grad_checkpointing(True)
        except (AttributeError, AssertionError, NotImplementedError) as err:
            raise ValueError(
                f'BackboneAdapter(with_cp=True): {self.backbone_type} does '
                'not support gradient checkpointing '
                f'({err or "refused by timm"}); set with_cp=False, or wrap a '
                "model that supports it (e.g. timm's ViTs, ResNets)") from err
        # switched on per forward, in training only
        self.backbone.set_grad_checkpointing(False)

    def _with_cp_config(self, backbone: dict) -> dict:
        """``backbone`` with ``with_cp=True``, if its class takes it."""
        name = backbone['type']
        cls = MODELS.get(name) if isinstance(name, str) else name
        if cls is None:  # unknown type: MODELS.build names it
            return backbone
        if 'with_cp' not in inspect.signature(cls).parameters:
            raise ValueError(
                'BackboneAdapter(with_cp=True): the backbone '
                f'{self.backbone_type} takes no `with_cp` argument, so its '
                'activations cannot be checkpointed; set with_cp=False, or '
                "use a backbone that takes one (e.g. 'TimmVisionTransformer', "
                "'mmpretrain.ResNet', 'mmpretrain.SwinTransformer') or a timm "
                'model (`timm_model`)')
        return dict(backbone, with_cp=True)

    def _probe(self, size: Tuple[int, int]) -> int:
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            _, tokens = self._features(torch.zeros(1, 3, *size))
        self.backbone.train(was_training)
        return tokens.shape[-1]

    def _features(
            self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.with_cp and self.from_timm:  # training only (eval: no graph)
            self.backbone.set_grad_checkpointing(
                self.training and torch.is_grad_enabled())
        out = (self.backbone.forward_features(images)
               if self.from_timm else self.backbone(images))
        read = read_tokens(out, self.num_prefix_tokens, self.channels_last)
        if read is None:
            raise ValueError(
                f'BackboneAdapter: the output of {self.backbone_type} cannot '
                f'be read as tokens; it returned {_describe(out)} for images '
                f'of shape {tuple(images.shape)}. Expected a feature map '
                '[B, C, h, w], a token sequence [B, L, C], a tuple of stages '
                'ending with one of those, or a pair (global [B, C], tokens '
                "[B, N, C]); e.g. set out_type='raw' or 'featmap' for an "
                'mmpretrain VisionTransformer instead of pooled outputs.')
        return read

    def forward(
            self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            images: ``[B, 3, H, W]`` normalised images.

        Returns:
            tuple: global feature ``[B, C]`` and tokens ``[B, N, C]``.
        """
        global_feat, tokens = self._features(images)
        return self.proj(global_feat), self.proj(tokens)

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

    Rules, in this order:

    * a pair ``(global [B, C], tokens [B, N, C])`` (the plugin's own image
      encoders) is returned as it is;
    * any other tuple/list (the stages of an MMEngine backbone, e.g.
      ``out_indices``) is read from its last element;
    * a feature map ``[B, C, h, w]`` (``[B, h, w, C]`` with
      ``channels_last``, timm's NHWC models such as Swin) gives ``h * w``
      tokens, and the global feature is their mean (average pooling);
    * a sequence ``[B, L, C]`` whose first ``num_prefix_tokens`` entries are
      prefix tokens (a ViT's [cls], distillation or register tokens) gives the
      other ``L - num_prefix_tokens`` tokens; the global feature is the first
      prefix token ([cls]) if there is one, else the tokens' mean.

    Args:
        out: The backbone output.
        num_prefix_tokens: Number of leading non-patch tokens of a
            ``[B, L, C]`` sequence.
        channels_last: A 4-D map is ``[B, h, w, C]``.

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

    timm reads the weights (safetensors, or ``torch.load(weights_only=True)``;
    a ``state_dict``/``model`` entry and a ``module.`` prefix unwrapped, no
    EMA), the classifier its ``pretrained_cfg`` names is dropped, and
    ``timm.create_model(pretrained=True, pretrained_cfg_overlay=...)`` applies
    the architecture's checkpoint filter (a ViT's position embeddings are
    resampled to its ``img_size``) and loads them with ``strict=True``.

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

    MDRL's image encoder maps images ``[B, 3, H, W]`` to a global feature
    ``[B, C]`` and a token sequence ``[B, N, C]`` and has ``out_channels``.
    This adapter builds

    * ``backbone``: any config MMEngine's registries can build, scoped types
      included (``'mmpretrain.VisionTransformer'`` with ``out_type='raw'`` or
      ``'featmap'``, ``'mmpretrain.ResNet'``, ``'mmpretrain.SwinTransformer'``,
      or the plugin's own ``'TimmVisionTransformer'``/``'TimmCNNEncoder'``),
      called as ``backbone(images)``; or
    * ``timm_model``: a timm model by name, created with ``num_classes=0`` and
      called as ``model.forward_features(images)``,

    and reads its output with :func:`read_tokens`: the last stage's map
    flattened into tokens with its mean as global feature (CNNs, Swin), or a
    ViT's patch tokens with its [cls] output as global feature (the mean when
    it has no [cls]). The number of prefix tokens is read from the backbone
    (``num_extra_tokens`` for mmpretrain, ``num_prefix_tokens`` for timm).

    ``out_channels`` is discovered by one forward pass of a zero image of size
    ``probe_size`` at build time (eval mode, no gradients), which also checks
    that the output can be read as tokens: a backbone whose output cannot
    (e.g. pooled vectors only) fails at build time with an error naming its
    type and the shapes it returned.

    Weights: an MMEngine backbone loads its library's model-zoo checkpoint
    through its own ``init_cfg``, e.g. for a checkpoint of an mmpretrain
    ``ImageClassifier`` ``init_cfg=dict(type='Pretrained', checkpoint=path,
    prefix='backbone.')`` (applied by ``init_weights``, which the Runner
    calls; an ``http(s)://`` checkpoint comes from the torch hub cache). A
    timm model loads ``timm_checkpoint`` (a local file, a timm tag or a URL,
    see :mod:`mdrl_plugin.models.weights`) with timm's own loader, strictly
    (:func:`create_timm_model`); ``init_weights`` then leaves it alone.

    Args:
        backbone: Config of a registered backbone (exclusive with
            ``timm_model``).
        timm_model: timm model name, e.g. ``'resnet18'``.
        timm_kwargs: Extra arguments of ``timm.create_model``.
        timm_checkpoint: Weights of ``timm_model``: a local timm checkpoint
            file, a timm tag such as ``'resnet18.a1_in1k'`` (``'timm'``: the
            default tag) or an ``http(s)://`` URL.
        out_channels: If set, a linear projection of both outputs to this
            width; else the backbone's width.
        probe_size: ``(H, W)`` of the probe image; set it to the training size
            when the backbone accepts only one size.
        with_cp: Activation checkpointing of the wrapped backbone, passed on
            to it: a ``timm_model`` gets timm's ``set_grad_checkpointing``
            (switched on in training with gradients enabled, off otherwise); a
            registered ``backbone`` whose class takes a ``with_cp`` argument
            (the plugin's ``TimmVisionTransformer``, mmpretrain's ResNet,
            Swin, ConvNeXt...) gets ``with_cp=True`` in its config and
            checkpoints in its own way (mmpretrain calls
            ``torch.utils.checkpoint`` itself, with torch's default
            ``use_reentrant``). A backbone that supports neither is a
            ``ValueError`` at build time naming it (mmpretrain's
            ``VisionTransformer`` has no ``with_cp``), rather than a run that
            silently keeps every activation. Defaults to False.
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
            self.num_prefix_tokens = getattr(self.backbone,
                                             'num_prefix_tokens', 0)
            self.channels_last = getattr(
                self.backbone, 'output_fmt', 'NCHW') == 'NHWC'
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
            self.num_prefix_tokens = getattr(self.backbone, 'num_extra_tokens',
                                             getattr(self.backbone,
                                                     'num_prefix_tokens', 0))
            self.channels_last = False
        self.embed_dims = self._probe(tuple(probe_size))
        self.proj = (nn.Linear(self.embed_dims, out_channels)
                     if out_channels else nn.Identity())
        self.out_channels = out_channels or self.embed_dims

    def _check_timm_checkpointing(self) -> None:
        """Fail now if the timm model cannot checkpoint its activations."""
        hint = ('set with_cp=False, or wrap a model that supports it (e.g. '
                "timm's ViTs, ResNets, ConvNeXts)")
        switch = getattr(self.backbone, 'set_grad_checkpointing', None)
        if switch is None:
            raise ValueError(
                f'BackboneAdapter(with_cp=True): {self.backbone_type} has no '
                'set_grad_checkpointing (no activation checkpointing); '
                f'{hint}')
        try:  # timm models without support assert or raise here
            switch(True)
        except (AssertionError, NotImplementedError) as err:
            raise ValueError(
                f'BackboneAdapter(with_cp=True): {self.backbone_type} does '
                'not support gradient checkpointing '
                f'({err or "refused by timm"}); {hint}') from err
        switch(False)  # switched on per forward, in training only

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
            tuple: global feature ``[B, C]`` and tokens ``[B, N, C]``,
            ``C = out_channels``.
        """
        global_feat, tokens = self._features(images)
        return self.proj(global_feat), self.proj(tokens)

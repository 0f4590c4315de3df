"""A timm CNN whose last feature map serves as a token sequence."""
from typing import Optional, Tuple

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS
from ..weights import image_source, load_timm_checkpoint

__all__ = ['TimmCNNEncoder']


@MODELS.register_module()
class TimmCNNEncoder(BaseModule):
    """CNN image encoder returning a global feature and flattened map tokens.

    The last feature map ``[B, C, h, w]`` of a timm CNN (e.g. ResNet-50) is
    flattened into ``h * w`` tokens; the global feature is its average. This
    lets the token-based MDRL parts (DLL, CIM) run on a CNN.

    Args:
        arch: timm model name, e.g. ``'resnet50'``.
        pretrained: ``None``; a local checkpoint file; a timm tag of
            ``arch`` such as ``'resnet50.tv_in1k'`` (``'timm'``: the default
            tag), from the Hugging Face cache; or an ``http(s)://`` URL (torch
            hub cache); see :mod:`mdrl_plugin.models.weights`. Read by timm's
            ``load_checkpoint`` (non-strict).
        out_channels: If set, a linear projection of all outputs to this width.
        arch_kwargs: Extra arguments of ``timm.create_model``.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 arch: str = 'resnet50',
                 pretrained: Optional[str] = None,
                 out_channels: Optional[int] = None,
                 arch_kwargs: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        what = 'CNN pretrained weights'
        source = (image_source(pretrained, arch, what)
                  if pretrained is not None else None)
        self.cnn = timm.create_model(arch, num_classes=0, **(arch_kwargs or {}))
        if source is not None:
            load_timm_checkpoint(self.cnn, source.resolve(), what=what)
        self.embed_dims = self.cnn.num_features
        self.proj = (nn.Linear(self.embed_dims, out_channels)
                     if out_channels else nn.Identity())
        self.out_channels = out_channels or self.embed_dims

    def init_weights(self) -> None:
        """Keep timm's (or the pretrained) initialisation."""
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            images: ``[B, 3, H, W]``.

        Returns:
            tuple: global feature ``[B, C]`` and tokens ``[B, h*w, C]``.
        """
        fmap = self.cnn.forward_features(images)
        tokens = fmap.flatten(2).transpose(1, 2)
        tokens = self.proj(tokens)
        return tokens.mean(dim=1), tokens

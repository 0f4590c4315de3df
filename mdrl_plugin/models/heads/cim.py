"""Cross-modal interaction (CIM) and the identity classifier."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS

from ..utils import build_transformer_encoder, masked_transformer

__all__ = ['CrossModalInteraction', 'IdentityClassifier']


@MODELS.register_module()
class CrossModalInteraction(BaseModule):
    """Cross-modal interaction module (CIM) of MDRL.

    K cross-modal interaction transformer encoders (CITE) read a learnable
    cross-modal [cls] token, the N visual tokens and the M text tokens of the
    same image-caption pair (text padding masked). The [cls] output is the
    cross-modal feature :math:`f_c`, trained with the identity loss only. CIM
    runs in training only; retrieval never uses it.

    Args:
        embed_dims: Token width D (both modalities).
        num_layers: K. Defaults to 2.
        num_heads: Attention heads. Defaults to 8.
        mlp_ratio: MLP ratio. Defaults to 4.
        dropout: Dropout. Defaults to 0.
        modality_embed: Add a learnable embedding per modality so the
            encoder can tell visual from text tokens. Defaults to True.
        with_cp: Activation checkpointing of the layers in training
            (:func:`masked_transformer`). Defaults to False.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_layers: int = 2,
                 num_heads: int = 8,
                 mlp_ratio: float = 4.0,
                 dropout: float = 0.0,
                 modality_embed: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.embed_dims = embed_dims
        self.with_cp = with_cp
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.modality_embed = (nn.Parameter(torch.zeros(2, embed_dims))
                               if modality_embed else None)
        self.encoder = build_transformer_encoder(embed_dims, num_layers,
                                                 num_heads, mlp_ratio, dropout)

    def forward(
            self,
            image_tokens: torch.Tensor,
            text_tokens: torch.Tensor,
            text_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the cross-modal feature of each pair.

        Args:
            image_tokens: ``[B, N, D]`` visual tokens.
            text_tokens: ``[B, M, D]`` text tokens of the same pairs.
            text_padding_mask: ``[B, M]`` bool, True = padding, or None.

        Returns:
            ``[B, D]`` cross-modal features :math:`f_c`.
        """
        B, N, D = image_tokens.shape
        if text_tokens.shape[0] != B or text_tokens.shape[2] != D:
            raise ValueError(
                'CrossModalInteraction needs one caption per image with the '
                'same width: got image tokens '
                f'{tuple(image_tokens.shape)} and text tokens '
                f'{tuple(text_tokens.shape)}')
        if self.modality_embed is not None:
            image_tokens = image_tokens + self.modality_embed[0]
            text_tokens = text_tokens + self.modality_embed[1]
        seq = torch.cat(
            [self.cls_token.expand(B, 1, D), image_tokens, text_tokens], dim=1)
        mask = (None if text_padding_mask is None else  # [cls], image: real
                F.pad(text_padding_mask, (1 + N, 0)))
        return masked_transformer(self.encoder, seq, mask,
                                  with_cp=self.with_cp)[:, 0]


@MODELS.register_module()
class IdentityClassifier(BaseModule):
    """Linear identity classifier over the training identities.

    Args:
        in_channels: Feature width.
        num_classes: Number of training identities C.
        bias: Use a bias. Defaults to False.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: int,
                 bias: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.fc = nn.Linear(in_channels, num_classes, bias=bias)
        nn.init.normal_(self.fc.weight, std=0.001)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Return logits ``[..., C]`` of features ``[..., in_channels]``."""
        return self.fc(feats)

"""Building blocks shared by the MDRL modules."""
from typing import Optional

import torch
import torch.nn as nn

__all__ = ['build_transformer_encoder', 'masked_transformer']


def build_transformer_encoder(embed_dims: int,
                              num_layers: int,
                              num_heads: int = 8,
                              mlp_ratio: float = 4.0,
                              dropout: float = 0.0) -> nn.TransformerEncoder:
    """A stack of pre-norm transformer encoder layers with a final LayerNorm.

    Each layer is self-attention, LayerNorm and a GELU MLP with residual
    connections, the block the paper calls a transformer encoder.

    Args:
        embed_dims: Token width D.
        num_layers: Number of layers.
        num_heads: Attention heads; must divide ``embed_dims``.
        mlp_ratio: Hidden width of the MLP relative to ``embed_dims``.
        dropout: Dropout in attention and MLP.

    Returns:
        ``nn.TransformerEncoder`` taking ``[B, L, D]`` (batch first).
    """
    if num_layers < 1:
        raise ValueError(f'num_layers must be >= 1, got {num_layers}')
    if embed_dims % num_heads != 0:
        raise ValueError(f'num_heads={num_heads} must divide '
                         f'embed_dims={embed_dims}')
    layer = nn.TransformerEncoderLayer(
        d_model=embed_dims,
        nhead=num_heads,
        dim_feedforward=int(embed_dims * mlp_ratio),
        dropout=dropout,
        activation='gelu',
        batch_first=True,
        norm_first=True)
    return nn.TransformerEncoder(
        layer,
        num_layers=num_layers,
        norm=nn.LayerNorm(embed_dims),
        enable_nested_tensor=False)


def masked_transformer(encoder: nn.TransformerEncoder, tokens: torch.Tensor,
                       padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Run ``encoder`` with a key padding mask (``True`` marks padding).

    Args:
        encoder: Encoder from :func:`build_transformer_encoder`.
        tokens: ``[B, L, D]``.
        padding_mask: ``[B, L]`` bool, ``True`` where a token is padding, or
            ``None`` when nothing is padded.

    Returns:
        ``[B, L, D]``; rows at padded positions carry no meaning.
    """
    if padding_mask is not None and not padding_mask.any():
        padding_mask = None
    return encoder(tokens, src_key_padding_mask=padding_mask)

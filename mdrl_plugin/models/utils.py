"""Building blocks shared by the MDRL modules."""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint

__all__ = ['build_transformer_encoder', 'masked_transformer']


def build_transformer_encoder(embed_dims: int,
                              num_layers: int,
                              num_heads: int = 8,
                              mlp_ratio: float = 4.0,
                              dropout: float = 0.0) -> nn.TransformerEncoder:
    """A stack of pre-norm transformer encoder layers with a final LayerNorm.

    Self-attention and a GELU MLP with residuals: the paper's transformer
    encoder.

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
                       padding_mask: Optional[torch.Tensor],
                       with_cp: bool = False) -> torch.Tensor:
    """Run ``encoder`` with a key padding mask (``True`` marks padding).

    With ``with_cp``, in training with gradients enabled, each layer runs
    under ``torch.utils.checkpoint`` (``use_reentrant=False``, dropout
    replayed): the plain run's outputs and gradients, for less memory.

    Args:
        encoder: Encoder from :func:`build_transformer_encoder`.
        tokens: ``[B, L, D]``.
        padding_mask: ``[B, L]`` bool, ``True`` where a token is padding, or
            ``None`` when nothing is padded.
        with_cp: Checkpoint each layer in training. Defaults to False.

    Returns:
        ``[B, L, D]``; rows at padded positions carry no meaning.
    """
    if padding_mask is not None and not padding_mask.any():
        padding_mask = None
    if not (with_cp and encoder.training and torch.is_grad_enabled()):
        return encoder(tokens, src_key_padding_mask=padding_mask)
    # what nn.TransformerEncoder.forward does in training (no mask, not
    # causal, no nested tensors), one checkpointed call per layer; each layer
    # turns the bool padding mask into the same additive mask the encoder would
    out = tokens
    for layer in encoder.layers:
        out = torch.utils.checkpoint.checkpoint(
            layer, out, None, padding_mask, use_reentrant=False)
    return encoder.norm(out) if encoder.norm is not None else out

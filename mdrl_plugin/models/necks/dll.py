"""Disordered local learning (DLL)."""
from typing import Optional, Tuple

import torch
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS

from ..utils import build_transformer_encoder, masked_transformer

__all__ = ['DisorderedLocalLearning', 'group_tokens']


def group_tokens(tokens: torch.Tensor,
                 padding_mask: Optional[torch.Tensor],
                 num_groups: int,
                 shuffle: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Split each sample's real tokens into ``num_groups`` groups.

    The real tokens, shuffled (torch's RNG) or in order, are cut into runs
    whose sizes differ by at most one: of ``n``, the one at place ``r`` goes
    to group ``floor(r * num_groups / n)``; padding is never grouped. Groups
    are padded to ``ceil(L / num_groups)`` (docs/models.md).

    Args:
        tokens: ``[B, L, D]``.
        padding_mask: ``[B, L]`` bool (True = padding) or None.
        num_groups: Number of groups P.
        shuffle: Random (disordered) grouping if True, fixed positional
            grouping if False.

    Returns:
        tuple: groups ``[B, P, G, D]`` and their padding mask ``[B, P, G]``
        (True = empty slot).
    """
    B, L, D = tokens.shape
    device = tokens.device
    valid = (torch.ones(B, L, dtype=torch.bool, device=device)
             if padding_mask is None else ~padding_mask)
    if shuffle:
        keys = torch.rand(B, L, device=device)
    else:
        keys = torch.arange(L, device=device, dtype=torch.float).expand(B, L)
    keys = keys.masked_fill(~valid, float('inf'))
    order = keys.argsort(dim=1)  # real tokens first
    n = valid.sum(dim=1, keepdim=True).clamp(min=1)  # [B, 1]
    place = torch.arange(L, device=device).expand(B, L)
    group = torch.div(place * num_groups, n, rounding_mode='floor')
    start = torch.div(
        group * n + num_groups - 1, num_groups, rounding_mode='floor')
    slot = place - start
    is_real = place < valid.sum(dim=1, keepdim=True)
    # padding goes to a spare group P, dropped below
    group = torch.where(is_real, group, torch.full_like(group, num_groups))
    slot = torch.where(is_real, slot, torch.zeros_like(slot))
    size = -(-L // num_groups)
    batch = torch.arange(B, device=device)[:, None].expand(B, L)
    sorted_tokens = tokens.gather(1, order[..., None].expand(B, L, D))
    groups = tokens.new_zeros(B, num_groups + 1, size, D)
    groups = groups.index_put((batch, group, slot), sorted_tokens)
    empty = torch.ones(
        B, num_groups + 1, size, dtype=torch.bool, device=device)
    empty = empty.index_put((batch, group, slot),
                            torch.zeros_like(batch, dtype=torch.bool))
    return groups[:, :num_groups], empty[:, :num_groups]


@MODELS.register_module()
class DisorderedLocalLearning(BaseModule):
    """Disordered local learning module (DLL) of MDRL.

    In training, a sample's token sequence (visual patches without [cls], or
    text tokens without [cls] and padding) is randomly shuffled and split into
    P groups, so each group is a random subset of the whole image or
    description. The modality's global feature (:math:`f_g^I` or
    :math:`f_g^T`) is prepended to each group and a shared local transformer
    encoder runs over it; its first output is that group's local feature
    :math:`f_l^k`. In evaluation (or with ``shuffle=False``, the conventional
    part split) the grouping is fixed by position.

    Args:
        embed_dims: Token width D.
        num_groups: P (Q for text). Defaults to 4.
        num_layers: Layers of the local encoder. Defaults to 1.
        num_heads: Attention heads. Defaults to 8.
        mlp_ratio: MLP ratio. Defaults to 4.
        dropout: Dropout. Defaults to 0.
        shuffle: Shuffle tokens in training. Defaults to True.
        with_cp: Activation checkpointing of the layers in training
            (:func:`masked_transformer`; the grouping is drawn once, outside).
            Defaults to False.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 embed_dims: int,
                 num_groups: int = 4,
                 num_layers: int = 1,
                 num_heads: int = 8,
                 mlp_ratio: float = 4.0,
                 dropout: float = 0.0,
                 shuffle: bool = True,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_groups < 1:
            raise ValueError(f'num_groups must be >= 1, got {num_groups}')
        self.embed_dims = embed_dims
        self.num_groups = num_groups
        self.shuffle = shuffle
        self.with_cp = with_cp
        self.encoder = build_transformer_encoder(embed_dims, num_layers,
                                                 num_heads, mlp_ratio, dropout)

    def forward(self,
                global_feat: torch.Tensor,
                tokens: torch.Tensor,
                padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Compute the local features.

        Args:
            global_feat: ``[B, D]`` global feature of each sample.
            tokens: ``[B, L, D]`` token sequence (no [cls]).
            padding_mask: ``[B, L]`` bool, True = padding, or None.

        Returns:
            ``[B, P, D]`` local features.
        """
        B, L, D = tokens.shape
        if D != self.embed_dims:
            raise ValueError(
                f'DisorderedLocalLearning(embed_dims={self.embed_dims}) '
                f'got tokens of width {D}')
        groups, empty = group_tokens(tokens, padding_mask, self.num_groups,
                                     self.shuffle and self.training)
        P, G = groups.shape[1:3]
        seq = torch.cat(
            [global_feat[:, None, None, :].expand(B, P, 1, D), groups], dim=2)
        mask = torch.cat([empty.new_zeros(B, P, 1), empty], dim=2)
        out = masked_transformer(self.encoder, seq.reshape(B * P, G + 1, D),
                                 mask.reshape(B * P, G + 1),
                                 with_cp=self.with_cp)
        return out[:, 0].reshape(B, P, D)

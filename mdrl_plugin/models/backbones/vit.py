"""Vision Transformer image encoder built on timm."""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from mdrl_plugin.registry import MODELS

from .adapter import create_timm_model

__all__ = ['TimmVisionTransformer']


@MODELS.register_module()
class TimmVisionTransformer(BaseModule):
    """ViT image encoder: global feature :math:`f_g^I` and the patch tokens.

    A timm ViT cuts a ``H x W`` image into patches (``patch_size``, stride
    ``stride``), prepends a learnable [cls] token, adds learnable position
    embeddings and runs the transformer. The [cls] output is the global visual
    feature, the N patch outputs are the visual token sequence.

    Args:
        arch: timm model name, e.g. ``'vit_base_patch16_224'`` (ViT-B/16).
        img_size: Input size ``(H, W)``. Defaults to ``(384, 128)``.
        patch_size: Patch size. Defaults to 16.
        stride: Patch stride; smaller than ``patch_size`` gives overlapping
            patches. Defaults to ``patch_size``.
        pretrained: ``None`` (random init), a local file, a timm tag of
            ``arch`` (``'timm'``: the default tag) or an ``http(s)://`` URL,
            loaded strictly by :func:`create_timm_model`.
        out_channels: If set, a linear projection of all outputs to this width.
        drop_path_rate: Stochastic depth rate.
        arch_kwargs: Extra arguments of ``timm.create_model`` (e.g.
            ``embed_dim``, ``depth``, ``num_heads`` for a small ViT).
        with_cp: Activation checkpointing of the blocks in training, through
            timm's ``set_grad_checkpointing``. Defaults to False.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 arch: str = 'vit_base_patch16_224',
                 img_size: Union[int, Sequence[int]] = (384, 128),
                 patch_size: int = 16,
                 stride: Optional[int] = None,
                 pretrained: Optional[str] = None,
                 out_channels: Optional[int] = None,
                 drop_path_rate: float = 0.1,
                 arch_kwargs: Optional[dict] = None,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        img_size = ((img_size, img_size) if isinstance(img_size, int)
                    else tuple(img_size))
        kwargs = dict(
            img_size=img_size,
            patch_size=patch_size,
            drop_path_rate=drop_path_rate)
        kwargs.update(arch_kwargs or {})
        self.pretrained = pretrained
        self.vit = create_timm_model(arch, pretrained,
                                     'ViT pretrained weights', **kwargs)
        if not isinstance(self.vit, VisionTransformer):
            raise TypeError(f'{arch!r} is not a timm VisionTransformer')
        if self.vit.num_prefix_tokens != 1:
            raise ValueError(
                f'{arch!r} has {self.vit.num_prefix_tokens} prefix '
                'tokens; only ViTs with one [cls] token are supported')
        if stride is not None and stride != patch_size:
            self._set_stride(stride, img_size, patch_size)
        self.img_size = img_size
        self.with_cp = with_cp
        self.embed_dims = self.vit.embed_dim
        self.proj = (nn.Linear(self.embed_dims, out_channels)
                     if out_channels else nn.Identity())
        self.out_channels = out_channels or self.embed_dims

    @property
    def num_patches(self) -> int:
        """Number N of patch tokens."""
        return self.vit.patch_embed.num_patches

    def _set_stride(self, stride: int, img_size: Tuple[int, int],
                    patch_size: int) -> None:
        pe = self.vit.patch_embed
        pe.proj.stride = (stride, stride)
        grid = tuple((s - patch_size) // stride + 1 for s in img_size)
        if self.pretrained is None:
            pos_embed = torch.zeros(1, grid[0] * grid[1] + 1,
                                    self.vit.embed_dim)
            nn.init.trunc_normal_(pos_embed, std=0.02)
        else:  # the loaded embeddings, resampled to the strided grid
            pos_embed = resample_abs_pos_embed(self.vit.pos_embed.data, grid,
                                               pe.grid_size)
        pe.grid_size, pe.num_patches = grid, grid[0] * grid[1]
        self.vit.pos_embed = nn.Parameter(pos_embed)

    def init_weights(self) -> None:
        """Keep timm's (or the pretrained) initialisation of the ViT."""
        if self.init_cfg is not None:
            super().init_weights()

    def forward(
            self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            images: ``[B, 3, H, W]`` normalised images.

        Returns:
            tuple: global feature ``[B, C]`` and patch tokens ``[B, N, C]``.
        """
        if tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(
                f'TimmVisionTransformer expects images of size (H, W) = '
                f'{self.img_size}, got {tuple(images.shape[-2:])}: resize '
                'them in the pipeline or set img_size in the config')
        if self.with_cp:  # checkpoint in training only (eval: no graph)
            self.vit.set_grad_checkpointing(
                self.training and torch.is_grad_enabled())
        x = self.proj(self.vit.forward_features(images))
        return x[:, 0], x[:, 1:]

"""Shared machinery of the cross-modal matching losses (CMPM, SDM)."""
from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor, nn

from .utils import all_gather_with_grad, check_matching_inputs, matching_kl

__all__ = ['BaseMatchingLoss']


class BaseMatchingLoss(nn.Module, metaclass=ABCMeta):
    """Symmetric KL matching loss between image and text features.

    ``L_i2t + L_t2i`` with ``L_i2t = mean_i sum_j p_ij (log p_ij -
    log(q_ij + eps))``, ``p_ij = softmax_j(s(x_i, z_j))`` and ``q_ij = y_ij /
    sum_k y_ik`` (``y_ij = 1`` when i and j share an identity); ``L_t2i``
    swaps ``x`` and ``z``. Subclasses define ``s`` in :meth:`similarity`.
    With ``gather_across_ranks=True`` under distributed training the keys
    cover the global batch (:mod:`mdrl_plugin.models.losses.utils`).

    Args:
        eps: Added to the true matching distribution inside the log.
        loss_weight: Factor applied to the loss.
        gather_across_ranks: Match against the features of all ranks.
    """

    def __init__(self,
                 eps: float = 1e-8,
                 loss_weight: float = 1.0,
                 gather_across_ranks: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        if not eps >= 0:
            raise ValueError(f'{name}: eps must be >= 0, got {eps}')
        self.eps = float(eps)
        self.loss_weight = float(loss_weight)
        self.gather_across_ranks = bool(gather_across_ranks)

    @abstractmethod
    def similarity(self, queries: Tensor, keys: Tensor) -> Tensor:
        """Logits of the matching distribution.

        Args:
            queries: Features ``[R, D]`` of one modality.
            keys: Features ``[N, D]`` of the other modality.

        Returns:
            Similarities ``[R, N]`` (the softmax runs over the last dim).
        """

    def forward(self, image_feats: Tensor, text_feats: Tensor,
                labels: Tensor) -> Tensor:
        """Compute the weighted loss.

        Args:
            image_feats: Image features ``[B, D]``.
            text_feats: Text features ``[B, D]``; row i pairs with image i.
            labels: Identity labels ``[B]`` (integers).

        Returns:
            The loss, a scalar tensor multiplied by ``loss_weight``.
        """
        name = type(self).__name__
        check_matching_inputs(
            name, image_feats, text_feats, labels,
            allow_empty=self.gather_across_ranks)
        if image_feats.dtype in (torch.float16, torch.bfloat16):
            image_feats = image_feats.float()
        if text_feats.dtype in (torch.float16, torch.bfloat16):
            text_feats = text_feats.float()

        if self.gather_across_ranks:
            gathered = all_gather_with_grad(image_feats, text_feats, labels)
            all_images, all_texts, all_labels = gathered.tensors
            world_size = gathered.world_size
        else:
            all_images, all_texts, all_labels = image_feats, text_feats, labels
            world_size = 1
        total = all_labels.shape[0]
        if total == 0:
            raise ValueError(f'{name}: got an empty batch (B = 0)')

        i2t = matching_kl(
            self.similarity(image_feats, all_texts), labels, all_labels,
            self.eps)
        t2i = matching_kl(
            self.similarity(text_feats, all_images), labels, all_labels,
            self.eps)
        loss = (i2t.sum() + t2i.sum()) * (world_size / total)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return (f'eps={self.eps}, loss_weight={self.loss_weight}, '
                f'gather_across_ranks={self.gather_across_ranks}')

"""Cross-modal projection matching (CMPM) loss."""
import torch.nn.functional as F
from torch import Tensor

from mdrl_plugin.registry import MODELS

from .base_matching_loss import BaseMatchingLoss

__all__ = ['CMPMLoss']


@MODELS.register_module()
class CMPMLoss(BaseMatchingLoss):
    """Cross-modal projection matching loss (Zhang and Lu, ECCV 2018).

    The matching logits are the scalar projections of one modality's features
    on the normalised features of the other:
    ``p_ij = softmax_j(x_i . z_j / |z_j|)`` for image-to-text and
    ``softmax_j(z_i . x_j / |x_j|)`` for text-to-image. The true matching
    distribution ``q_ij = y_ij / sum_k y_ik`` spreads the mass evenly over all
    samples of the same identity in the batch. The loss is
    ``L_i2t + L_t2i`` with ``L = mean_i KL(p_i || q_i + eps)``.

    Args:
        eps: Added to ``q`` inside the log (``log(q + eps)``); it bounds the
            penalty of probability mass on non-matching pairs.
            Defaults to 1e-8.
        loss_weight: Factor applied to the loss. Defaults to 1.0.
        gather_across_ranks: Under distributed training, match against the
            features of all ranks (the global batch). Defaults to False.

    Example:
        >>> from mdrl_plugin.registry import MODELS
        >>> loss = MODELS.build(dict(type='CMPMLoss', loss_weight=1.0))
        >>> value = loss(image_feats, text_feats, labels)  # doctest: +SKIP
    """

    def similarity(self, queries: Tensor, keys: Tensor) -> Tensor:
        """``queries . keys / |keys|``: scalar projections, ``[R, N]``."""
        return queries @ F.normalize(keys, dim=1).t()

"""Similarity distribution matching (SDM) loss."""
import torch.nn.functional as F
from torch import Tensor

from mdrl_plugin.registry import MODELS

from .base_matching_loss import BaseMatchingLoss

__all__ = ['SDMLoss']


@MODELS.register_module()
class SDMLoss(BaseMatchingLoss):
    """Similarity distribution matching loss (IRRA, Jiang and Ye, CVPR 2023).

    Like :class:`CMPMLoss` but on temperature-scaled cosine similarities:
    ``p_ij = softmax_j(cos(x_i, z_j) / temperature)`` (and symmetric for
    text-to-image), the same true matching distribution
    ``q_ij = y_ij / sum_k y_ik`` and the loss ``L_i2t + L_t2i`` with
    ``L = mean_i KL(p_i || q_i + eps)``.

    Args:
        temperature: Softmax temperature of the cosine similarities. IRRA
            uses a logit scale of 50, i.e. ``temperature = 1 / 50 = 0.02``.
            Defaults to 0.02.
        eps: Added to ``q`` inside the log. Defaults to 1e-8.
        loss_weight: Factor applied to the loss. Defaults to 1.0.
        gather_across_ranks: Under distributed training, match against the
            features of all ranks (the global batch). Defaults to False.
    """

    def __init__(self,
                 temperature: float = 0.02,
                 eps: float = 1e-8,
                 loss_weight: float = 1.0,
                 gather_across_ranks: bool = False) -> None:
        super().__init__(
            eps=eps,
            loss_weight=loss_weight,
            gather_across_ranks=gather_across_ranks)
        if not temperature > 0:
            raise ValueError(
                f'SDMLoss: temperature must be > 0, got {temperature}')
        self.temperature = float(temperature)

    def similarity(self, queries: Tensor, keys: Tensor) -> Tensor:
        """Cosine similarities divided by the temperature, ``[R, N]``."""
        return (F.normalize(queries, dim=1)
                @ F.normalize(keys, dim=1).t()) / self.temperature

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, ' + super().extra_repr()

"""Identity (classification) loss."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mdrl_plugin.registry import MODELS

from .utils import check_labels

__all__ = ['IDLoss']


@MODELS.register_module()
class IDLoss(nn.Module):
    """Cross-entropy of identity logits, averaged over the batch.

    Labels are checked against the number of classes first (one host-device
    synchronisation): a classifier too small for the dataset is a clear
    ``ValueError``, not a device-side assert.

    Args:
        label_smoothing: Label smoothing of the cross-entropy, in [0, 1).
            Defaults to 0.0.
        loss_weight: Factor applied to the loss. Defaults to 1.0.
    """

    def __init__(self,
                 label_smoothing: float = 0.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError('IDLoss: label_smoothing must be in [0, 1), got '
                             f'{label_smoothing}')
        self.label_smoothing = float(label_smoothing)
        self.loss_weight = float(loss_weight)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Compute the weighted loss.

        Args:
            logits: Identity logits ``[B, C]``.
            labels: Identity labels ``[B]``, integers in ``[0, C)``.

        Returns:
            The mean cross-entropy times ``loss_weight``, a scalar tensor.

        Raises:
            ValueError: If a shape or dtype is wrong, or a label lies outside
                ``[0, C)``.
        """
        if logits.dim() != 2 or not logits.is_floating_point():
            raise ValueError('IDLoss: logits must be a floating point tensor '
                             f'of shape [B, C], got {tuple(logits.shape)} '
                             f'{logits.dtype}')
        check_labels('IDLoss', labels, logits.shape[0])
        num_classes = logits.shape[1]
        low, high = (int(v) for v in torch.stack(
            [labels.min(), labels.max()]).tolist())
        if low < 0 or high >= num_classes:
            bad = high if high >= num_classes else low
            raise ValueError(
                f'IDLoss: the classifier has {num_classes} classes but a '
                f'label of {bad} was seen (labels must lie in '
                f"[0, {num_classes})); set the model's `num_classes` to the "
                "dataset's metainfo['num_classes']")
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        loss = F.cross_entropy(
            logits, labels.long(), label_smoothing=self.label_smoothing)
        return loss * self.loss_weight

    def extra_repr(self) -> str:
        return (f'label_smoothing={self.label_smoothing}, '
                f'loss_weight={self.loss_weight}')

"""Matching and identity losses."""
from .base_matching_loss import BaseMatchingLoss
from .cmpm_loss import CMPMLoss
from .id_loss import IDLoss
from .sdm_loss import SDMLoss
from .utils import all_gather_with_grad, gather_features

__all__ = [
    'BaseMatchingLoss', 'CMPMLoss', 'SDMLoss', 'IDLoss',
    'all_gather_with_grad', 'gather_features'
]

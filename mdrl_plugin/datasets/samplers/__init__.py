"""Data samplers."""
from .identity_sampler import IdentityBalancedSampler

__all__ = ['IdentityBalancedSampler']

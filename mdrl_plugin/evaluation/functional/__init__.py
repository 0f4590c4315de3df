"""Functional retrieval metrics (plain functions on tensors)."""
from .retrieval import (
    rank_metrics,
    rank_metrics_from_features,
    rows_per_chunk,
    similarity_chunks,
)

__all__ = [
    'rank_metrics', 'rank_metrics_from_features', 'rows_per_chunk',
    'similarity_chunks'
]

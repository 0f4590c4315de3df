"""Chunked similarity: the one place that splits ``query @ gallery.T``.

The retrieval metric (:mod:`.retrieval`) walks the queries in chunks of
rows so that only ``chunk_size x G`` scores exist at once (gallery search
ranks in NumPy: :class:`mdrl_deploy.ranking.Ranker`).
"""
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['rows_per_chunk', 'similarity_chunks']


def rows_per_chunk(num_gallery: int, max_scores: int) -> int:
    """Query rows per chunk so that a chunk holds at most ``max_scores``
    scores (at least one row).

    Args:
        num_gallery (int): Gallery size ``G`` (scores per row).
        max_scores (int): Bound on the scores of one chunk.

    Returns:
        int: ``max(1, max_scores // G)``.
    """
    return max(1, max_scores // max(1, num_gallery))


def similarity_chunks(query: Tensor,
                      gallery_t: Optional[Tensor],
                      chunk_size: int,
                      order: Optional[Tensor] = None
                      ) -> Iterator[Tuple[Tensor, Tensor]]:
    """Similarity rows, ``chunk_size`` queries at a time.

    Args:
        query (Tensor): ``[Q, D]`` query features, or a ``[Q, G]``
            similarity matrix when ``gallery_t`` is None.
        gallery_t (Tensor, optional): ``[D, G]`` transposed gallery features.
        chunk_size (int): Queries per chunk.
        order (Tensor, optional): The query indices to visit, in this order.
            Defaults to all queries in turn.

    Yields:
        tuple[Tensor, Tensor]: ``rows`` (the chunk's query indices) and its
        ``[len(rows), G]`` similarities ``query[rows] @ gallery_t`` (or
        ``query[rows]``).
    """
    if order is None:
        order = torch.arange(query.shape[0], device=query.device)
    for start in range(0, order.numel(), chunk_size):
        rows = order[start:start + chunk_size]
        block = query[rows]
        yield rows, block if gallery_t is None else block @ gallery_t

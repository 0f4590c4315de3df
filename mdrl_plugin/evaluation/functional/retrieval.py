"""Retrieval metrics (Rank-k, mAP, mINP) for text-to-image person search.

Both public functions share one chunked kernel that never sorts a similarity
row: for a query with ``m`` matches it sorts only the ``m`` match scores
``t`` and counts, for every ``t_j``, the gallery items scoring ``>= t_j``
(one batched :func:`torch.searchsorted`, a histogram and a suffix sum; or, on
the CPU when few scores reach the lowest match score, a sort of only those:
``_sparse_at_least``). Rank-k, AP and INP follow from these match ranks.
Queries are visited by increasing number of matches (so a chunk pads its
match lists to similar lengths); queries without a match are skipped.

Tie rule (pessimistic, order-independent): a non-match tied with a match is
ranked ahead of it; matches tied with each other take consecutive ranks::

    rank(match g) = 1 + #{h : s_h > s_g}
                      + #{non-match h : s_h == s_g}
                      + #{match h : s_h == s_g, h < g}

A constant similarity row therefore puts every match last.
"""
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mdrl_deploy.utils import check_topk

__all__ = [
    'rank_metrics', 'rank_metrics_from_features', 'rows_per_chunk',
    'similarity_chunks'
]

#: With ``chunk_size=None`` a chunk holds about this many scores (about 13
#: bytes each: float32 score, int32 bucket index, bool mask; ~110 MB).
CHUNK_ELEMENTS = 2**23

#: On the CPU, a chunk uses the sparse search when at most this fraction of
#: its scores reach their row's lowest match score (sorting a kept score
#: costs about twice as much as searching one, measured on an ICFG chunk).
SPARSE_MAX_FRACTION = 0.5

#: Batched search: bucket indices (plus row offsets) below this use int32.
_INT32_LIMIT = 2**31

TopK = Union[int, Sequence[int]]


def rows_per_chunk(num_gallery: int, max_scores: int) -> int:
    """Query rows per chunk of at most ``max_scores`` scores (at least 1).

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
        tuple[Tensor, Tensor]: The chunk's query indices ``rows`` and
        ``query[rows] @ gallery_t`` (or ``query[rows]``).
    """
    if order is None:
        order = torch.arange(query.shape[0], device=query.device)
    for start in range(0, order.numel(), chunk_size):
        rows = order[start:start + chunk_size]
        block = query[rows]
        yield rows, block if gallery_t is None else block @ gallery_t


def _check_topk(topk: TopK) -> Tuple[int, ...]:
    """Validate ``topk`` and return it as a tuple of positive ints."""
    if isinstance(topk, int) and not isinstance(topk, bool):
        topk = (topk, )
    try:
        ks = tuple(topk)
    except TypeError:
        raise TypeError('topk must be an int or a sequence of positive ints, '
                        f'got {type(topk).__name__}') from None
    if len(ks) == 0:
        raise ValueError('topk must contain at least one value, got ()')
    ks = tuple(check_topk(k, f'topk {ks!r}: each value') for k in ks)
    if len(set(ks)) < len(ks):  # R@k would be counted once per repeat
        raise ValueError(f'topk {ks!r} repeats a value; give each k once')
    return ks


def _check_chunk_size(chunk_size: Optional[int]) -> Optional[int]:
    """``chunk_size`` if it is a positive int or None, else ValueError."""
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(
            f'chunk_size must be a positive int or None, got {chunk_size!r}')
    return chunk_size


def _check_matrix(value: Tensor, name: str, shape: str,
                  min_cols: int) -> None:
    """Check that ``value`` is a floating ``[>= 1, >= min_cols]`` tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(
            f'{name} must be a torch.Tensor, got {type(value).__name__}')
    if value.dim() != 2 or value.shape[0] == 0 or value.shape[1] < min_cols:
        raise ValueError(
            f'{name} must have shape {shape}, got {list(value.shape)}')
    if not value.is_floating_point():
        raise TypeError(
            f'{name} must have a floating-point dtype, got {value.dtype}')


def _check_pids(pids: Tensor, name: str, length: int, what: str) -> None:
    """Check that ``pids`` is a 1-D integer tensor of ``length`` items."""
    if not isinstance(pids, Tensor):
        raise TypeError(
            f'{name} must be a torch.Tensor, got {type(pids).__name__}')
    if pids.dtype == torch.bool or pids.is_floating_point() \
            or pids.is_complex():
        raise TypeError(f'{name} must have an integer dtype, got {pids.dtype}')
    if pids.dim() != 1 or pids.numel() != length:
        raise ValueError(f'{name} must have shape [{length}] (one pid per '
                         f'{what}), got {list(pids.shape)}')


class _MatchTable:
    """Gallery indices of every identity (from ``[Q]`` ``query_pids`` and
    ``[G]`` ``gallery_pids``, on ``device``), to be gathered per query."""

    def __init__(self, query_pids: Tensor, gallery_pids: Tensor,
                 device: torch.device) -> None:
        num_query = query_pids.numel()
        pids = torch.cat([query_pids.to(device, torch.int64),
                          gallery_pids.to(device, torch.int64)])
        _, labels = torch.unique(pids, return_inverse=True)
        q_labels, g_labels = labels[:num_query], labels[num_query:]
        num_labels = int(labels.max().item()) + 1
        # Gallery indices grouped by label; group l is
        # order[offsets[l]:offsets[l] + counts[l]].
        self.order = torch.sort(g_labels, stable=True).indices
        counts = torch.bincount(g_labels, minlength=num_labels)
        self.offsets = torch.cumsum(counts, 0) - counts
        self.q_labels = q_labels
        #: number of matches of every query
        self.q_counts = counts[q_labels]
        # Queries with a match, by increasing number of matches, so that a
        # chunk pads its match lists to similar lengths.
        with_match = torch.nonzero(self.q_counts > 0, as_tuple=True)[0]
        by_count = torch.sort(self.q_counts[with_match], stable=True).indices
        #: the queries to rank, in processing order
        self.query_order = with_match[by_count]
        #: number of queries that have at least one match
        self.num_valid = int(with_match.numel())

    def gather(self, start: int, end: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Queries ``start:end`` of :attr:`query_order` and their matches.

        Returns:
            tuple[Tensor, Tensor, Tensor]: ``index`` ``[B, m]`` (gallery
            indices of their matches, padding points at item 0), ``valid``
            ``[B, m]`` bool and ``counts`` ``[B]``, ``m = max(counts)``.
        """
        queries = self.query_order[start:end]
        counts = self.q_counts[queries]
        m = int(counts.max().item())
        pos = torch.arange(m, device=counts.device)
        valid = pos[None, :] < counts[:, None]
        flat = self.offsets[self.q_labels[queries]][:, None] + pos[None, :]
        flat = torch.where(valid, flat, torch.zeros_like(flat))
        return self.order[flat], valid, counts


def _sortable_key(values: np.ndarray) -> np.ndarray:
    """Map float32 values to int64 keys in ``[0, 2**32)`` with the same order.

    Equal floats (``-0.0`` and ``+0.0`` included) get equal keys; NaN must not
    occur.
    """
    bits = (values + np.float32(0.0)).view(np.int32)  # -0.0 -> +0.0
    # negative floats: flip the magnitude bits so that they sort reversed
    bits ^= (bits >> 31) & np.int32(0x7FFFFFFF)
    return bits.astype(np.int64) + 2**31


def _sparse_at_least(sim: np.ndarray, thresholds: np.ndarray,
                     max_fraction: float) -> Optional[np.ndarray]:
    """``#{g : sim[b, g] >= thresholds[b, j]}`` from the scores that reach
    their row's lowest match score only.

    Each such score becomes an int64 key (row in the high 32 bits, an
    order-preserving image of the float in the low 32); one sort of the
    chunk's keys and one binary search of the threshold keys give every
    count, exactly (equal floats have equal keys).

    Returns:
        np.ndarray | None: ``[n, m]`` int64 counts, or None when more than
        ``max_fraction`` of the scores qualify (use the dense search).
    """
    num_rows = sim.shape[0]
    m = thresholds.shape[1]
    mask = sim >= thresholds[:, :1]
    per_row = np.count_nonzero(mask, axis=1)
    if per_row.sum() > max_fraction * sim.size:
        return None
    rows = np.arange(num_rows, dtype=np.int64) << 32
    keys = _sortable_key(sim[mask])
    keys += np.repeat(rows, per_row)
    keys.sort()
    threshold_keys = _sortable_key(thresholds) + rows[:, None]
    # keys of row b are the sorted block keys[row_end[b] - per_row[b]:...]
    row_end = np.cumsum(per_row)
    below = np.searchsorted(keys, threshold_keys.reshape(-1),
                            side='left').reshape(num_rows, m)
    return row_end[:, None] - below


def _batched_at_least(sim: Tensor, thresholds: Tensor) -> Tensor:
    """``#{g : sim[b, g] >= thresholds[b, j]}`` with one batched
    ``torch.searchsorted`` (``O(G log m)`` per row), one bincount of the
    bucket indices offset by ``row * (m + 1)`` and a suffix sum."""
    num_rows, m = thresholds.shape
    # int32 halves the memory traffic; int64 when the offsets need it
    small = num_rows * (m + 1) < _INT32_LIMIT
    bucket = torch.searchsorted(
        thresholds, sim, right=True, out_int32=small)
    bucket.add_(
        torch.arange(
            0, num_rows * (m + 1), m + 1, dtype=bucket.dtype,
            device=sim.device)[:, None])
    hist = torch.bincount(
        bucket.view(-1), minlength=num_rows * (m + 1)).view(num_rows, m + 1)
    # hist[b, i] = #{g : #{j : t[b, j] <= sim[b, g]} == i}
    return hist[:, 1:].flip(1).cumsum(1).flip(1)


def _at_least(sim: Tensor, thresholds: Tensor,
              sparse_fraction: float) -> Tensor:
    """``[B, m]`` int64 ``#{g : sim[b, g] >= thresholds[b, j]}``: sparse
    for float32 CPU chunks where at most ``sparse_fraction`` of the scores
    qualify (rows split among ``torch.get_num_threads()`` threads), else
    batched."""
    if sparse_fraction > 0 and sim.device.type == 'cpu' \
            and sim.dtype == torch.float32:
        sim_np, thresholds_np = sim.numpy(), thresholds.numpy()
        parts = min(torch.get_num_threads(), sim.shape[0])
        bounds = np.linspace(0, sim.shape[0], parts + 1).astype(int)
        # numpy releases the GIL in its comparisons, copies and sort
        with ThreadPoolExecutor(parts) as pool:
            blocks = list(pool.map(
                lambda lo, hi: _sparse_at_least(
                    sim_np[lo:hi], thresholds_np[lo:hi], sparse_fraction),
                bounds[:-1], bounds[1:]))
        if all(block is not None for block in blocks):
            return torch.from_numpy(np.concatenate(blocks))
    return _batched_at_least(sim, thresholds)


def _chunk_ranks(sim: Tensor,
                 index: Tensor,
                 valid: Tensor,
                 counts: Tensor,
                 sparse_fraction: float = 0.0) -> Tensor:
    """Ranks of the matches of ``[B, G]`` contiguous float32/64 rows
    ``sim`` (``index``, ``valid``, ``counts``: :meth:`_MatchTable.gather`;
    ``sparse_fraction``: :func:`_at_least`).

    Returns:
        Tensor: ``[B, m]`` int64 ranks (1-based, the module's tie rule) of
        the matches by *ascending* score: entry ``j < counts`` is the rank of
        the ``j``-th smallest match score, so ranks decrease along a row;
        padded entries are undefined.
    """
    m = index.shape[1]
    scores = sim.gather(1, index)
    scores.masked_fill_(~valid, float('inf'))
    # Padding sorts last (+inf), so the first counts[b] entries are the real
    # match scores whatever they are (+inf included).
    thresholds = torch.sort(scores, dim=1).values
    # at_least[b, j] = #{g : sim[b, g] >= thresholds[b, j]}
    at_least = _at_least(sim, thresholds, sparse_fraction)
    # matches_at_least[b, j] = #{real j' : t[b, j'] >= t[b, j]}
    #                        = counts[b] - (first position of t[b, j])
    arange = torch.arange(m, device=sim.device)
    is_first = torch.ones_like(thresholds, dtype=torch.bool)
    is_first[:, 1:] = thresholds[:, 1:] != thresholds[:, :-1]
    first = torch.where(is_first, arange[None, :], torch.zeros_like(index))
    if not bool(is_first.all()):  # tied match scores
        first = torch.cummax(first, dim=1).values
    matches_at_least = counts[:, None] - first
    # position of the match in the descending order of the matches (1-based)
    position = counts[:, None] - arange[None, :]
    # rank = position among matches + non-matches scoring >= it
    return position + at_least - matches_at_least


def _accumulate(ranks: Tensor, valid: Tensor, counts: Tensor,
                ks: Tuple[int, ...], sums: Dict[str, Tensor]) -> None:
    """Add the per-query R@k, AP and INP of a chunk (all with matches)."""
    ranks = ranks.to(torch.float64)
    countsf = counts.to(torch.float64)
    arange = torch.arange(ranks.shape[1], device=ranks.device)
    position = (counts[:, None] - arange[None, :]).to(torch.float64)
    precision = torch.where(valid, position / ranks,
                            torch.zeros_like(ranks))
    sums['mAP'] += (precision.sum(1) / countsf).sum()
    # ranks decrease along a row: entry 0 is the last match,
    # entry counts - 1 the best one
    sums['mINP'] += (countsf / ranks[:, 0]).sum()
    best = ranks.gather(1, (counts - 1)[:, None])[:, 0]
    for k in ks:
        sums[f'R{k}'] += (best <= k).sum().to(torch.float64)


def _finish(sums: Dict[str, Tensor], num_valid: int,
            num_query: int) -> Dict[str, float]:
    """Turn the accumulated sums into percentages (and warn about skips)."""
    if num_valid == 0:
        raise ValueError(
            f'none of the {num_query} queries has a matching gallery item '
            '(no query pid occurs in gallery_pids); retrieval metrics are '
            'undefined')
    if num_valid < num_query:
        warnings.warn(
            f'{num_query - num_valid} of {num_query} queries have no matching '
            'gallery item (their pid is not in gallery_pids); they are '
            'excluded from R@k, mAP and mINP', UserWarning, stacklevel=4)
    return {key: float(val.item()) * 100.0 / num_valid
            for key, val in sums.items()}


def _run(query: Tensor, gallery_t: Optional[Tensor], query_pids: Tensor,
         gallery_pids: Tensor, chunk_size: int, ks: Tuple[int, ...],
         device: torch.device) -> Dict[str, float]:
    """Rank :func:`similarity_chunks` of ``query`` (and ``gallery_t``) and
    accumulate the metrics."""
    table = _MatchTable(query_pids, gallery_pids, device)
    sums = {key: torch.zeros((), dtype=torch.float64, device=device)
            for key in [f'R{k}' for k in ks] + ['mAP', 'mINP']}
    chunks = similarity_chunks(query, gallery_t, chunk_size,
                               table.query_order)
    for start, (_, sim) in zip(range(0, table.num_valid, chunk_size),
                               chunks):
        index, valid, counts = table.gather(start, start + chunk_size)
        if sim.dtype in (torch.float16, torch.bfloat16):
            sim = sim.float()  # exact: order and ties are preserved
        ranks = _chunk_ranks(sim.contiguous(), index, valid, counts,
                             SPARSE_MAX_FRACTION)
        _accumulate(ranks, valid, counts, ks, sums)
    return _finish(sums, table.num_valid, query.shape[0])


def rank_metrics(similarity: Tensor,
                 query_pids: Tensor,
                 gallery_pids: Tensor,
                 topk: TopK = (1, 5, 10)) -> Dict[str, float]:
    """Rank-k, mAP and mINP of a query x gallery similarity matrix.

    Gallery items are ranked by descending similarity; an item matches a
    query (row) with the same pid. ``R{k}``: share of queries with a match
    in the first ``k`` ranks; ``mAP``: mean over queries of the mean over
    their matches of ``(matches ranked up to it) / (its rank)``; ``mINP``:
    mean of ``(number of matches) / (rank of the last match)``. Ties are
    pessimistic (module docstring). Queries without a match are left out,
    with a :class:`UserWarning`; :class:`ValueError` if no query has one.

    Args:
        similarity (Tensor): ``[Q, G]`` floating similarities, no NaN.
        query_pids (Tensor): ``[Q]`` integer identities of the queries.
        gallery_pids (Tensor): ``[G]`` integer identities of the gallery.
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k.

    Returns:
        dict[str, float]: ``R{k}`` per ``k``, ``mAP`` and ``mINP``, in
        percent.
    """
    ks = _check_topk(topk)
    _check_matrix(similarity, 'similarity', '[Q, G] with Q, G >= 1', 1)
    num_query, num_gallery = similarity.shape
    _check_pids(query_pids, 'query_pids', num_query, 'similarity row')
    _check_pids(gallery_pids, 'gallery_pids', num_gallery,
                'similarity column')
    if torch.isnan(similarity).any():
        raise ValueError('similarity contains NaN; ranking is undefined')
    return _run(similarity.detach(), None, query_pids, gallery_pids,
                rows_per_chunk(num_gallery, CHUNK_ELEMENTS), ks,
                similarity.device)


def rank_metrics_from_features(
        query_feats: Tensor,
        gallery_feats: Tensor,
        query_pids: Tensor,
        gallery_pids: Tensor,
        topk: TopK = (1, 5, 10),
        chunk_size: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None
) -> Dict[str, float]:
    """:func:`rank_metrics` of ``query_feats @ gallery_feats.T`` (normalise
    the features first for cosine similarity), without building that
    matrix: ``chunk_size`` queries at a time, ``O(chunk_size * G)`` memory.

    Args:
        query_feats (Tensor): ``[Q, D]`` floating query features.
        gallery_feats (Tensor): ``[G, D]`` floating gallery features.
        query_pids (Tensor): ``[Q]`` integer identities of the queries.
        gallery_pids (Tensor): ``[G]`` integer identities of the gallery.
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k.
        chunk_size (int, optional): Queries per chunk; None:
            ``max(1, 2**23 // G)`` (about 8M scores, 110 MB).
        device (str | torch.device, optional): Where to compute; None: the
            device of ``query_feats``.

    Returns:
        dict[str, float]: ``R{k}`` per ``k``, ``mAP`` and ``mINP``, in
        percent.
    """
    ks = _check_topk(topk)
    _check_matrix(query_feats, 'query_feats', '[N, D] with N >= 1', 0)
    _check_matrix(gallery_feats, 'gallery_feats', '[N, D] with N >= 1', 0)
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(
            'query_feats and gallery_feats must have the same feature size, '
            f'got {query_feats.shape[1]} and {gallery_feats.shape[1]}')
    _check_pids(query_pids, 'query_pids', len(query_feats), 'query_feats row')
    _check_pids(gallery_pids, 'gallery_pids', len(gallery_feats),
                'gallery_feats row')
    chunk_size = _check_chunk_size(chunk_size) or rows_per_chunk(
        len(gallery_feats), CHUNK_ELEMENTS)
    device = torch.device(device) if device is not None \
        else query_feats.device
    dtype = torch.promote_types(query_feats.dtype, gallery_feats.dtype)
    query = query_feats.detach().to(device, dtype)
    gallery_t = gallery_feats.detach().to(device, dtype).t().contiguous()
    for name, feats in (('query_feats', query), ('gallery_feats', gallery_t)):
        if not torch.isfinite(feats).all():
            raise ValueError(f'{name} contains NaN or infinite values')
    return _run(query, gallery_t, query_pids, gallery_pids, chunk_size, ks,
                device)

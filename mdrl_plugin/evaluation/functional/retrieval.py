"""Retrieval metrics (Rank-k, mAP, mINP) for text-to-image person search.

Both public functions share one chunked kernel that never sorts a similarity
row. For a query with ``m`` matches it

1. gathers the ``m`` match scores of the row and sorts only them (``t``,
   ascending),
2. counts, for every match score ``t_j``, the gallery items scoring
   ``>= t_j``: with one batched :func:`torch.searchsorted` of every score
   in ``t`` (``O(G log m)``), a histogram of the bucket indices and a suffix
   sum -- or, on the CPU when at most half of the scores reach the row's
   lowest match score (as with a trained model), by sorting only those
   scores once and binary-searching ``t`` in them (see
   ``_sparse_at_least``),
3. turns these counts into the rank of every match under the tie rule below.

Queries are processed in order of their number of matches (so a chunk pads
its match lists to similar lengths); queries without a match are skipped.

Rank-k needs the best match's rank, AP all match ranks, INP the last match's
rank, so nothing else is needed.

Tie rule (pessimistic, order-independent): a gallery item whose similarity
equals a match's similarity but which is *not* a match is ranked ahead of that
match; matches tied with each other take consecutive ranks (in gallery order,
which does not change any metric). Equivalently, the gallery is ordered by
descending similarity, then non-matches before matches, then gallery index::

    rank(match g) = 1 + #{h : s_h > s_g}
                      + #{non-match h : s_h == s_g}
                      + #{match h : s_h == s_g, h < g}

Without ties this is the usual ``1 + #{h : s_h > s_g}``. A constant similarity
row therefore puts every match last: tied scores earn no credit.
"""
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from mdrl_deploy.utils import check_topk

from .similarity import rows_per_chunk, similarity_chunks

__all__ = ['rank_metrics', 'rank_metrics_from_features']

#: With ``chunk_size=None`` a chunk holds about this many similarity scores
#: (``max(1, CHUNK_ELEMENTS // G)`` queries): large enough for an efficient
#: matrix product and few per-chunk calls, small enough for the memory (a
#: chunk needs about 13 bytes per score: the float32 scores, int32 bucket
#: indices and a bool mask; about 110 MB for 2**23 scores).
CHUNK_ELEMENTS = 2**23

#: On the CPU, a chunk uses the sparse search (``_sparse_at_least``) when at
#: most this fraction of its scores reach their row's lowest match score
#: (typical of trained models: sorting a kept score costs about twice as
#: much as searching one score, measured on one ICFG-size chunk);
#: otherwise the batched search is cheaper.
SPARSE_MAX_FRACTION = 0.5

#: Batched search: bucket indices (plus row offsets) below this use int32.
_INT32_LIMIT = 2**31

TopK = Union[int, Sequence[int]]


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
    return tuple(check_topk(k, f'topk {ks!r}: each value') for k in ks)


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


def _resolve_chunk_size(chunk_size: Optional[int], num_gallery: int) -> int:
    """Validate ``chunk_size``; ``None`` gives ``CHUNK_ELEMENTS // G`` rows."""
    if chunk_size is None:
        return rows_per_chunk(num_gallery, CHUNK_ELEMENTS)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) \
            or chunk_size < 1:
        raise ValueError(
            f'chunk_size must be a positive int or None, got {chunk_size!r}')
    return chunk_size


class _MatchTable:
    """Gallery indices of every identity, ready to be gathered per query.

    Args:
        query_pids (Tensor): ``[Q]`` integer pids of the queries.
        gallery_pids (Tensor): ``[G]`` integer pids of the gallery.
        device (torch.device): Where the index tensors live.
    """

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

    def gather(self, start: int,
               end: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Queries ``start:end`` of :attr:`order` and their padded matches.

        Returns:
            tuple[Tensor, Tensor, Tensor, Tensor]: ``queries`` ``[B]`` (query
            indices), ``index`` ``[B, m]`` (gallery indices of their matches,
            padding points at item 0), ``valid`` ``[B, m]`` bool and
            ``counts`` ``[B]``, with ``m = max(counts)``.
        """
        queries = self.query_order[start:end]
        counts = self.q_counts[queries]
        m = int(counts.max().item())
        pos = torch.arange(m, device=counts.device)
        valid = pos[None, :] < counts[:, None]
        flat = self.offsets[self.q_labels[queries]][:, None] + pos[None, :]
        flat = torch.where(valid, flat, torch.zeros_like(flat))
        index = self.order[flat]
        return queries, index, valid, counts


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
    their row's lowest match score, sorted once.

    Only scores ``>= thresholds[b, 0]`` count for any ``j``. They are
    gathered and turned into one int64 key each (row in the high 32 bits, an
    order-preserving image of the float32 value in the low 32), the keys of
    the whole chunk are sorted with one :func:`numpy.sort` (vectorised), and
    every count is a difference of two positions found by a binary search of
    the ``n * m`` threshold keys in the sorted keys (``O(n m log K)``, not
    per score). Equal floats have equal keys, so the counts are exact.

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
    """``at_least[b, j] = #{g : sim[b, g] >= thresholds[b, j]}`` of a chunk.

    On the CPU, float32 chunks where at most ``sparse_fraction`` of the
    scores reach their row's lowest match score use the sort of those scores
    (numpy; the chunk's rows are split among ``torch.get_num_threads()``
    Python threads, since numpy releases the GIL in the heavy steps); all
    others use one batched
    ``torch.searchsorted``.

    Returns:
        Tensor: ``[B, m]`` int64 counts.
    """
    if sparse_fraction > 0 and sim.device.type == 'cpu' \
            and sim.dtype == torch.float32:
        sim_np, thresholds_np = sim.numpy(), thresholds.numpy()
        parts = min(torch.get_num_threads(), sim.shape[0])
        if parts > 1:
            # numpy releases the GIL in its comparisons, copies and sort
            bounds = np.linspace(0, sim.shape[0], parts + 1).astype(int)
            with ThreadPoolExecutor(parts) as pool:
                blocks = list(pool.map(
                    lambda lo_hi: _sparse_at_least(
                        sim_np[lo_hi[0]:lo_hi[1]],
                        thresholds_np[lo_hi[0]:lo_hi[1]], sparse_fraction),
                    zip(bounds[:-1], bounds[1:])))
            if all(block is not None for block in blocks):
                return torch.from_numpy(np.concatenate(blocks))
        else:
            block = _sparse_at_least(sim_np, thresholds_np, sparse_fraction)
            if block is not None:
                return torch.from_numpy(block)
    return _batched_at_least(sim, thresholds)


def _chunk_ranks(sim: Tensor,
                 index: Tensor,
                 valid: Tensor,
                 counts: Tensor,
                 sparse_fraction: float = 0.0) -> Tensor:
    """Ranks of the matches of a block of similarity rows.

    Args:
        sim (Tensor): ``[B, G]`` contiguous similarity rows (float32 or
            float64).
        index (Tensor): ``[B, m]`` gallery indices of the matches (padded).
        valid (Tensor): ``[B, m]`` which entries of ``index`` are real.
        counts (Tensor): ``[B]`` number of matches per row.
        sparse_fraction (float): On the CPU, use the sparse search when at
            most this fraction of the scores reach their row's lowest match
            score. Defaults to 0 (always the batched search).

    Returns:
        Tensor: ``[B, m]`` int64 ranks (1-based, tie rule of the module)
        of the matches sorted by *ascending* similarity: entry ``j < counts``
        is the rank of the match holding the ``j``-th smallest match score,
        so ranks decrease along a row; padded entries are undefined.
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


def _accumulate(ranks: Tensor, counts: Tensor, ks: Tuple[int, ...],
                sums: Dict[str, Tensor]) -> None:
    """Add the per-query R@k, AP and INP of a chunk (all with matches)."""
    ranks = ranks.to(torch.float64)
    m = ranks.shape[1]
    countsf = counts.to(torch.float64)
    arange = torch.arange(m, device=ranks.device)
    real = arange[None, :] < counts[:, None]
    position = (counts[:, None] - arange[None, :]).to(torch.float64)
    precision = torch.where(real, position / ranks,
                            torch.zeros_like(ranks))
    sums['mAP'] += (precision.sum(1) / countsf).sum()
    # ranks decrease along a row: entry 0 is the last match,
    # entry counts - 1 the best one
    sums['mINP'] += (countsf / ranks[:, 0]).sum()
    best = ranks.gather(1, (counts - 1)[:, None])[:, 0]
    for k in ks:
        sums[f'R{k}'] += (best <= k).sum().to(torch.float64)


def _finish(sums: Dict[str, Tensor], num_valid: int, num_query: int,
            ks: Tuple[int, ...]) -> Dict[str, float]:
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
    out = {f'R{k}': sums[f'R{k}'] for k in ks}
    out['mAP'] = sums['mAP']
    out['mINP'] = sums['mINP']
    return {key: float(val.item()) * 100.0 / num_valid
            for key, val in out.items()}


def _run(chunks: Iterator[Tuple[Tensor, Tensor]], table: _MatchTable,
         ks: Tuple[int, ...], num_query: int, chunk_size: int,
         device: torch.device) -> Dict[str, float]:
    """Shared driver: rank the chunks of :func:`similarity_chunks` over
    ``table.query_order`` (``chunk_size`` rows each) and accumulate."""
    sums = {key: torch.zeros((), dtype=torch.float64, device=device)
            for key in [f'R{k}' for k in ks] + ['mAP', 'mINP']}
    for start, (_, sim) in zip(range(0, table.num_valid, chunk_size),
                               chunks):
        _, index, valid, counts = table.gather(start, start + chunk_size)
        if sim.dtype in (torch.float16, torch.bfloat16):
            sim = sim.float()  # exact: order and ties are preserved
        ranks = _chunk_ranks(sim.contiguous(), index, valid, counts,
                             SPARSE_MAX_FRACTION)
        _accumulate(ranks, counts, ks, sums)
    return _finish(sums, table.num_valid, num_query, ks)


def rank_metrics(similarity: Tensor,
                 query_pids: Tensor,
                 gallery_pids: Tensor,
                 topk: TopK = (1, 5, 10)) -> Dict[str, float]:
    """Rank-k, mAP and mINP of a query x gallery similarity matrix.

    Every row is one query; gallery items are ranked by descending similarity
    and an item is a match when its pid equals the query's pid.

    * ``R{k}``: share of queries with a match within the first ``k`` ranks.
    * ``mAP``: mean over queries of AP, the mean over the query's matches of
      ``(matches ranked up to and including it) / (its rank)``.
    * ``mINP``: mean over queries of ``(number of matches) / (rank of the
      last match)``.

    Ties follow a pessimistic rule: a non-matching item with the same
    similarity as a match is ranked ahead of it (see the module docstring for
    the exact formula). Queries without any match in the gallery are excluded
    from all averages, with a :class:`UserWarning` saying how many; if no
    query has a match a :class:`ValueError` is raised.

    Args:
        similarity (Tensor): ``[Q, G]`` floating-point similarities (higher is
            more similar); must not contain NaN.
        query_pids (Tensor): ``[Q]`` identities of the queries, any integer
            dtype.
        gallery_pids (Tensor): ``[G]`` identities of the gallery items, any
            integer dtype.
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k values.
            Defaults to ``(1, 5, 10)``.

    Returns:
        dict[str, float]: ``R{k}`` for every ``k`` in ``topk``, ``mAP`` and
        ``mINP``, all in percent.
    """
    ks = _check_topk(topk)
    if not isinstance(similarity, Tensor):
        raise TypeError('similarity must be a torch.Tensor, got '
                        f'{type(similarity).__name__}')
    if similarity.dim() != 2 or similarity.shape[0] == 0 \
            or similarity.shape[1] == 0:
        raise ValueError('similarity must have shape [Q, G] with Q, G >= 1, '
                         f'got {list(similarity.shape)}')
    if not similarity.is_floating_point():
        raise TypeError('similarity must have a floating-point dtype, got '
                        f'{similarity.dtype}')
    num_query, num_gallery = similarity.shape
    _check_pids(query_pids, 'query_pids', num_query, 'similarity row')
    _check_pids(gallery_pids, 'gallery_pids', num_gallery,
                'similarity column')
    if torch.isnan(similarity).any():
        raise ValueError('similarity contains NaN; ranking is undefined')
    device = similarity.device
    similarity = similarity.detach()
    table = _MatchTable(query_pids, gallery_pids, device)
    chunk_size = _resolve_chunk_size(None, num_gallery)
    return _run(
        similarity_chunks(similarity, None, chunk_size, table.query_order),
        table, ks, num_query, chunk_size, device)


def rank_metrics_from_features(
        query_feats: Tensor,
        gallery_feats: Tensor,
        query_pids: Tensor,
        gallery_pids: Tensor,
        topk: TopK = (1, 5, 10),
        chunk_size: Optional[int] = None,
        device: Optional[Union[str, torch.device]] = None
) -> Dict[str, float]:
    """Rank-k, mAP and mINP from query and gallery feature matrices.

    Gives the numbers of :func:`rank_metrics` on
    ``query_feats @ gallery_feats.T`` (plain dot product: normalise the
    features first for cosine similarity) without building that matrix:
    queries are processed ``chunk_size`` rows at a time, and no similarity row
    is sorted, so time is about one matrix product plus one binary search per
    similarity entry, and extra memory is ``O(chunk_size * G)``.

    Args:
        query_feats (Tensor): ``[Q, D]`` floating-point query features.
        gallery_feats (Tensor): ``[G, D]`` floating-point gallery features.
        query_pids (Tensor): ``[Q]`` integer identities of the queries.
        gallery_pids (Tensor): ``[G]`` integer identities of the gallery.
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k values.
            Defaults to ``(1, 5, 10)``.
        chunk_size (int, optional): Queries per chunk. Defaults to None:
            ``max(1, 2**23 // G)`` (422 for G = 19,848), so that a chunk
            holds about 8M scores and needs about 110 MB.
        device (str | torch.device, optional): Where to compute (e.g.
            ``'cuda'``). Defaults to the device of ``query_feats``.

    Returns:
        dict[str, float]: ``R{k}`` for every ``k`` in ``topk``, ``mAP`` and
        ``mINP``, all in percent. Ties and queries without a match are handled
        as in :func:`rank_metrics`.
    """
    ks = _check_topk(topk)
    for name, feats in (('query_feats', query_feats),
                        ('gallery_feats', gallery_feats)):
        if not isinstance(feats, Tensor):
            raise TypeError(
                f'{name} must be a torch.Tensor, got {type(feats).__name__}')
        if feats.dim() != 2 or feats.shape[0] == 0:
            raise ValueError(f'{name} must have shape [N, D] with N >= 1, '
                             f'got {list(feats.shape)}')
        if not feats.is_floating_point():
            raise TypeError(
                f'{name} must have a floating-point dtype, got {feats.dtype}')
    if query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(
            'query_feats and gallery_feats must have the same feature size, '
            f'got {query_feats.shape[1]} and {gallery_feats.shape[1]}')
    num_query, num_gallery = query_feats.shape[0], gallery_feats.shape[0]
    _check_pids(query_pids, 'query_pids', num_query, 'query_feats row')
    _check_pids(gallery_pids, 'gallery_pids', num_gallery,
                'gallery_feats row')
    chunk_size = _resolve_chunk_size(chunk_size, num_gallery)
    device = torch.device(device) if device is not None \
        else query_feats.device
    dtype = torch.promote_types(query_feats.dtype, gallery_feats.dtype)
    query = query_feats.detach().to(device, dtype)
    gallery_t = gallery_feats.detach().to(device, dtype).t().contiguous()
    for name, feats in (('query_feats', query), ('gallery_feats', gallery_t)):
        if not torch.isfinite(feats).all():
            raise ValueError(f'{name} contains NaN or infinite values')
    table = _MatchTable(query_pids, gallery_pids, device)
    return _run(
        similarity_chunks(query, gallery_t, chunk_size, table.query_order),
        table, ks, num_query, chunk_size, device)

"""Exact top-k cosine ranking with NumPy, at a fixed memory ceiling.

The one ranking of both searchers: descending inner product of
L2-normalised features, equal scores in ascending gallery order.
:func:`topk_cosine` scans all features in blocks of rows; :class:`Ranker`
first scans a per-image summary of global+local features for score bounds
and re-ranks only the images that can reach the top-k (docs/search.md,
"Ranking and scale", gives the derivation).
"""
from typing import List, Optional, Tuple

import numpy as np

from .utils import check_topk

__all__ = ['topk_cosine', 'summarize', 'Ranker']

#: Gallery values (and scores) handled per block: 2**22 float32 = 16 MiB.
MAX_ELEMENTS = 1 << 22
#: Most images one query keeps for the re-rank before a full scan (3 MiB).
MAX_CANDIDATES = 1 << 18


def _slack(dim: int) -> float:
    """Twice the float32 rounding bound of a dot product of unit vectors
    (BLAS rounds a row's score differently by its place in a block)."""
    return 4.0 * dim * 2.0 ** -24


def _near_top(scores: np.ndarray, index: np.ndarray, k: int,
              slack: float) -> Tuple[np.ndarray, np.ndarray]:
    """Items within ``slack`` of the k-th best score (at least ``k``)."""
    if len(scores) <= k:
        return scores, index
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    keep = np.flatnonzero(scores >= kth - slack)
    return scores[keep], index[keep]


def _top(scores: np.ndarray, index: np.ndarray,
         k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest scores (any order among equal ones), ascending."""
    if len(scores) > k:
        keep = np.argpartition(scores, len(scores) - k)[len(scores) - k:]
        scores, index = scores[keep], index[keep]
    order = np.argsort(scores, kind='stable')
    return scores[order], index[order]


def _final(gallery: np.ndarray, query: np.ndarray, rows: np.ndarray,
           k: int, max_elements: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of the candidate ``rows`` by (score descending, index
    ascending), each scored by one ``einsum`` dot product (duplicates tie
    exactly), read in blocks of ``max_elements`` values."""
    rows = np.sort(rows)
    step = max(1, max_elements // gallery.shape[1])
    scores = np.concatenate([np.zeros(0, np.float32)] + [np.einsum(
        'ij,j->i', np.asarray(gallery[rows[s:s + step]], np.float32), query)
        for s in range(0, len(rows), step)])
    order = np.lexsort((rows, -scores))[:k]
    return scores[order], rows[order]


def _require_finite(values: np.ndarray, ids: np.ndarray) -> None:
    """Refuse scores ``[..., n]`` of gallery rows ``ids`` that are NaN/inf."""
    finite = np.isfinite(values)
    if not finite.all():
        bad = ids[~finite.reshape(-1, len(ids)).all(axis=0)]
        raise ValueError(
            f'Gallery row(s) {", ".join(map(str, bad[:5].tolist()))} have '
            'non-finite features (NaN or inf): the index file is damaged or '
            'its model overflowed; rebuild the index.')


def _check(queries: np.ndarray, gallery: np.ndarray, k) -> int:
    if queries.ndim != 2 or gallery.ndim != 2:
        raise ValueError(f'topk_cosine needs [T, D] queries and [N, D] '
                         f'gallery, got {tuple(queries.shape)} and '
                         f'{tuple(gallery.shape)}')
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f'Query features are {queries.shape[1]}-d but the '
                         f'gallery features are {gallery.shape[1]}-d: they '
                         'come from different models')
    k = check_topk(k)
    if not np.isfinite(queries).all():
        raise ValueError('Query features are not finite (NaN or inf).')
    return min(int(k), gallery.shape[0])


def topk_cosine(queries: np.ndarray, gallery: np.ndarray, k: int,
                max_elements: int = MAX_ELEMENTS
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``queries @ gallery.T``, best first, ties by index.

    Args:
        queries: ``float32 [T, D]``.
        gallery: ``float32 [N, D]``, any array that slices by rows (a
            ``np.memmap`` is read in blocks, never whole).
        k: Hits per query; clipped to ``N``.
        max_elements: Gallery values (and scores) held at once.

    Returns:
        ``(scores float32 [T, k'], indices int64 [T, k'])``, ``k' = min(k,
        N)``; equal scores in ascending gallery index, also at the k-th place.

    Raises:
        ValueError: For mismatched shapes or a bad ``k``.
    """
    queries = np.asarray(queries, dtype=np.float32)
    k = _check(queries, gallery, k)
    num, dim = gallery.shape
    t, slack = queries.shape[0], _slack(dim)
    near_s = [np.zeros(0, np.float32) for _ in range(t)]
    near_i = [np.zeros(0, np.int64) for _ in range(t)]
    rows = max(1, max_elements // max(dim, t, 1))
    for start in range(0, num, rows):
        block = np.asarray(gallery[start:start + rows], dtype=np.float32)
        sims = queries @ block.T  # [T, rows]
        ids = np.arange(start, start + block.shape[0], dtype=np.int64)
        _require_finite(sims, ids)
        for q in range(t):
            s, i = _near_top(sims[q], ids, k, slack)
            near_s[q], near_i[q] = _near_top(np.concatenate([near_s[q], s]),
                                             np.concatenate([near_i[q], i]),
                                             k, slack)
    scores = np.empty((t, k), np.float32)
    indices = np.empty((t, k), np.int64)
    for q in range(t):
        scores[q], indices[q] = _final(gallery, queries[q], near_i[q], k,
                                       max_elements)
    return scores, indices


def _parts(x: np.ndarray, global_dim: int) -> np.ndarray:
    """``[..., D]`` -> ``[..., P + 1, G]``."""
    return x.reshape(*x.shape[:-1], x.shape[-1] // global_dim, global_dim)


def summarize(features: np.ndarray, global_dim: int,
              max_elements: int = MAX_ELEMENTS
              ) -> Tuple[np.ndarray, np.ndarray]:
    """The summary ``[B_0, P M]`` and spread ``|B_l - M|`` of each image.

    Args:
        features: ``float32 [N, (P + 1) G]`` global+local features.
        global_dim: ``G``.
        max_elements: Rows are processed in blocks of this many values.

    Returns:
        ``(summary float32 [2G, N], spread float32 [P, N])``, by columns.

    Raises:
        ValueError: If the width is not a multiple ``(P + 1) G``, P >= 1.
    """
    num, dim = features.shape
    if dim % global_dim or dim // global_dim < 2:
        raise ValueError(f'features of width {dim} are not global + local '
                         f'parts of width {global_dim}')
    p = dim // global_dim - 1
    summary = np.empty((2 * global_dim, num), np.float32)
    spread = np.empty((p, num), np.float32)
    rows = max(1, max_elements // dim)
    for s in range(0, num, rows):
        b = _parts(np.asarray(features[s:s + rows], np.float32), global_dim)
        mean = b[:, 1:].mean(axis=1)
        summary[:global_dim, s:s + rows] = b[:, 0].T
        summary[global_dim:, s:s + rows] = (p * mean).T
        spread[:, s:s + rows] = np.linalg.norm(b[:, 1:] - mean[:, None],
                                               axis=2).T
    return summary, spread


class Ranker:
    """Exact top-k of a (possibly memory-mapped) gallery, reading less.

    Args:
        features: ``float32 [N, D]`` L2-normalised gallery features.
        summary: ``[2G, N]`` of :func:`summarize`, or None: every search
            scans ``features``.
        spread: ``[P, N]`` of :func:`summarize`, or None.
        max_elements: Memory ceiling of one block (see :func:`topk_cosine`).
        max_candidates: Candidates per query past which it is fully scanned.
        max_fraction: Fraction of the gallery past which a query is fully
            scanned (gathering rows then costs more than a scan).
    """

    def __init__(self, features: np.ndarray,
                 summary: Optional[np.ndarray] = None,
                 spread: Optional[np.ndarray] = None,
                 max_elements: int = MAX_ELEMENTS,
                 max_candidates: int = MAX_CANDIDATES,
                 max_fraction: float = 0.25) -> None:
        self.features = features
        self.summary = None if spread is None else summary
        self.spread = spread
        self.max_elements = max_elements
        self.max_candidates = max_candidates
        self.max_fraction = max_fraction

    def search(self, queries: np.ndarray,
               k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores [T, k'], indices [T, k'])``: exactly
        :func:`topk_cosine`'s ranking."""
        queries = np.asarray(queries, dtype=np.float32)
        k = _check(queries, self.features, k)
        if self.summary is None:
            return topk_cosine(queries, self.features, k, self.max_elements)
        cands = self.shortlist(queries, k)
        scores = np.empty((len(queries), k), np.float32)
        indices = np.empty((len(queries), k), np.int64)
        dim = self.features.shape[1]
        step = max(1, self.max_elements // dim)
        for q, rows in enumerate(cands):
            if rows is None:  # bounds too loose: a full scan
                s, i = topk_cosine(queries[q:q + 1], self.features, k,
                                   self.max_elements)
                scores[q], indices[q] = s[0], i[0]
                continue
            rows = np.sort(rows)  # in file order: sequential reads of a map
            approx = np.concatenate([
                np.asarray(self.features[rows[s:s + step]], np.float32)
                @ queries[q] for s in range(0, len(rows), step)])
            _require_finite(approx, rows)
            _, near = _near_top(approx, rows, k, _slack(dim))
            scores[q], indices[q] = _final(self.features, queries[q], near, k,
                                           self.max_elements)
        return scores, indices

    def shortlist(self, queries: np.ndarray,
                  k: int) -> List[Optional[np.ndarray]]:
        """The images :meth:`search` re-ranks with their full features.

        Args:
            queries: ``float32 [T, D]`` L2-normalised query features.
            k: Hits per query (at most the gallery size).

        Returns:
            Per query, the rows whose upper bound reaches the k-th largest
            lower bound (a superset of the exact top-k), or None where too
            many would be kept: that query is ranked by a full scan.
        """
        if self.summary is None:
            raise ValueError('This Ranker has no summary: it always scans '
                             'the full features.')
        queries = np.asarray(queries, dtype=np.float32)
        gdim = self.summary.shape[0] // 2
        parts = _parts(queries, gdim)
        mean = parts[:, 1:].mean(axis=1)
        q_sum = np.concatenate([parts[:, 0], mean], axis=1)  # [T, 2G]
        q_dev = np.linalg.norm(parts[:, 1:] - mean[:, None], axis=2)  # [T, P]
        t, num = len(queries), self.summary.shape[1]
        slack = _slack(self.features.shape[1])
        low_s = [np.full(0, -np.inf, np.float32) for _ in range(t)]
        low_i = [np.zeros(0, np.int64) for _ in range(t)]
        keep_u: List[list] = [[] for _ in range(t)]
        keep_i: List[list] = [[] for _ in range(t)]
        kept = [0] * t
        limit = min(self.max_candidates, max(int(num * self.max_fraction), k))
        rows = max(1, self.max_elements // max(2 * gdim, t))
        for start in range(0, num, rows):
            if max(kept) < 0:
                break  # every query is ranked by a full scan
            est = q_sum @ np.asarray(self.summary[:, start:start + rows],
                                     np.float32)
            bound = q_dev @ np.asarray(self.spread[:, start:start + rows],
                                       np.float32) + slack
            ids = np.arange(start, start + est.shape[1], dtype=np.int64)
            _require_finite(est + bound, ids)
            for q in range(t):
                if kept[q] < 0:
                    continue
                s, i = _top(est[q] - bound[q], ids, k)
                low_s[q], low_i[q] = _top(np.concatenate([low_s[q], s]),
                                          np.concatenate([low_i[q], i]), k)
                tau = low_s[q][0] if len(low_s[q]) == k else -np.inf
                upper = est[q] + bound[q]
                new = np.flatnonzero(upper >= tau)
                keep_u[q].append(upper[new])
                keep_i[q].append(ids[new])
                kept[q] += len(new)
                if kept[q] > limit:  # prune to the new tau
                    u, i = np.concatenate(keep_u[q]), np.concatenate(keep_i[q])
                    keep_u[q], keep_i[q] = [u[u >= tau]], [i[u >= tau]]
                    kept[q] = len(keep_i[q][0])
                    if kept[q] > limit:
                        kept[q] = -1
        out: List[Optional[np.ndarray]] = []
        for q in range(t):
            if kept[q] < 0:
                out.append(None)
                continue
            u, i = np.concatenate(keep_u[q]), np.concatenate(keep_i[q])
            out.append(i[u >= low_s[q][0]])
        return out

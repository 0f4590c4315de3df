"""Exact top-k cosine ranking with NumPy at a fixed memory ceiling, the one
ranking of both searchers; the summary scan that reads less is derived in
docs/search.md, "Ranking and scale"."""
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


def _final(gallery: np.ndarray, query: np.ndarray, rows: np.ndarray,
           k: int, max_elements: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` of ``rows`` by (score descending, index ascending), each
    scored by one ``einsum`` (duplicates tie exactly), read in blocks."""
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
    """
    return Ranker(gallery, max_elements=max_elements).search(queries, k)


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
        """``(scores [T, k'], indices [T, k'])``: the exact ranking of
        :func:`topk_cosine`."""
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or self.features.ndim != 2:
            raise ValueError(f'Ranking needs [T, D] queries and [N, D] '
                             f'gallery, got {tuple(queries.shape)} and '
                             f'{tuple(self.features.shape)}')
        num, dim = self.features.shape
        if queries.shape[1] != dim:
            raise ValueError(f'Query features are {queries.shape[1]}-d but '
                             f'the gallery features are {dim}-d: they come '
                             'from different models')
        k = min(check_topk(k), num)
        if not np.isfinite(queries).all():
            raise ValueError('Query features are not finite (NaN or inf).')
        cands = ([None] * len(queries) if self.summary is None else
                 self.shortlist(queries, k))
        full = [q for q, rows in enumerate(cands) if rows is None]
        near = dict(zip(full, self._scan(queries[full], k) if full else []))
        step = max(1, self.max_elements // dim)
        scores = np.empty((len(queries), k), np.float32)
        indices = np.empty((len(queries), k), np.int64)
        for q, rows in enumerate(cands):
            if rows is not None:  # sorted: sequential reads of a map
                rows = np.sort(rows)
                approx = np.concatenate([
                    np.asarray(self.features[rows[s:s + step]], np.float32)
                    @ queries[q] for s in range(0, len(rows), step)])
                _require_finite(approx, rows)
                near[q] = _near_top(approx, rows, k, _slack(dim))[1]
            scores[q], indices[q] = _final(self.features, queries[q], near[q],
                                           k, self.max_elements)
        return scores, indices

    def _scan(self, queries: np.ndarray, k: int) -> List[np.ndarray]:
        """Per query, the rows near its top-k, from blocks of all rows."""
        num, dim = self.features.shape
        near_s = [np.zeros(0, np.float32)] * len(queries)
        near_i = [np.zeros(0, np.int64)] * len(queries)
        rows = max(1, self.max_elements // max(dim, len(queries)))
        for start in range(0, num, rows):
            block = np.asarray(self.features[start:start + rows], np.float32)
            sims = queries @ block.T  # [T, rows]
            ids = np.arange(start, start + len(block), dtype=np.int64)
            _require_finite(sims, ids)
            for q in range(len(queries)):
                near_s[q], near_i[q] = _near_top(
                    np.concatenate([near_s[q], sims[q]]),
                    np.concatenate([near_i[q], ids]), k, _slack(dim))
        return near_i

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
        low = np.full((t, k), -np.inf, np.float32)  # k largest lower bounds
        # per query: rows whose upper bound reaches the k-th lower bound so
        # far, with those bounds; None: too many, a full scan ranks it
        keep = [(np.zeros(0, np.float32), np.zeros(0, np.int64))] * t
        limit = min(self.max_candidates, max(int(num * self.max_fraction), k))
        rows = max(1, self.max_elements // max(2 * gdim, t))
        for start in range(0, num, rows):
            if all(kept is None for kept in keep):
                break
            est = q_sum @ np.asarray(self.summary[:, start:start + rows],
                                     np.float32)
            bound = q_dev @ np.asarray(self.spread[:, start:start + rows],
                                       np.float32) + slack
            ids = np.arange(start, start + est.shape[1], dtype=np.int64)
            upper = est + bound
            _require_finite(upper, ids)
            low = np.concatenate([low, est - bound], axis=1)
            low = np.partition(low, low.shape[1] - k, axis=1)[:, -k:]
            for q, kept in enumerate(keep):
                if kept is not None:
                    u = np.concatenate([kept[0], upper[q]])
                    sel = u >= low[q, 0]  # the k-th largest lower bound
                    keep[q] = (u[sel], np.concatenate([kept[1], ids])[sel])
                    if sel.sum() > limit:
                        keep[q] = None
        return [None if kept is None else kept[1] for kept in keep]

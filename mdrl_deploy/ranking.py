"""Top-k cosine ranking with NumPy: exact, chunked, with a fixed memory ceiling.

The one ranking rule of both search paths (``mdrl_plugin.apis.PersonSearcher``
and :class:`mdrl_deploy.OrtSearcher`): descending inner product of
L2-normalised features (cosine), equal scores in ascending gallery order.

:func:`topk_cosine` scans the gallery in blocks of rows, so that whatever
its size (a memory-mapped index may be larger than RAM) a search holds at
most ``max_elements`` gallery values and ``max_elements`` scores at once,
plus the ``[T, k]`` running result.

:class:`Ranker` reads less for ``global+local`` features. Such a feature is
``[B_0, B_1 .. B_P]`` (global part, then P local parts of width G, scaled by
``1 / sqrt(P + 1)``), and a score is ``<Q_0, B_0> + sum_l <Q_l, B_l>``.
With ``M`` the mean of an image's local parts and ``Qm`` the query's, the
local sum is ``P <Qm, M> + sum_l <Q_l - Qm, B_l - M>`` (the cross terms
vanish), and by Cauchy-Schwarz the last sum is at most
``sum_l |Q_l - Qm| |B_l - M|`` in absolute value. The index therefore keeps
a *summary* ``[B_0, P M]`` (width 2G) and the *spread* ``|B_l - M|`` (P
values) of each image (:func:`summarize`), stored by columns (``[2G, N]``
and ``[P, N]``: a scan multiplies the queries with long contiguous rows,
twice as fast as with ``[N, 2G]`` in OpenBLAS); a search scans those
(2G + P of the D = (P + 1) G values, 0.4 for the demo model), which gives
every image an estimate ``e`` and an error bound ``r``, keeps the images whose
upper bound ``e + r`` reaches the k-th largest lower bound ``e - r``, and
ranks them with their full features. Every image of the exact top-k is
kept (its score is at least the k-th largest score, which is at least the
k-th largest lower bound), so the result *is* the exact ranking, ties
included; only the time depends on how tight the bounds are. Float32
rounding is covered by a slack of ``4 D 2**-24`` on every bound (twice the
worst-case error of a dot product of unit vectors). When a query would keep
more than ``max_candidates`` images, or ``max_fraction`` of the gallery, it
is ranked by a full scan.
"""
from typing import List, Optional, Tuple

import numpy as np

__all__ = ['topk_cosine', 'summarize', 'Ranker', 'MAX_ELEMENTS',
           'MAX_CANDIDATES']

#: Gallery values (and scores) handled per block: 2**22 float32 = 16 MiB.
MAX_ELEMENTS = 1 << 22
#: Most images one query keeps for the exact re-rank before it falls back to
#: a full scan (bounds the candidate buffer: 2**18 x 12 bytes = 3 MiB).
MAX_CANDIDATES = 1 << 18


def _slack(dim: int) -> float:
    """Twice the float32 rounding bound of a dot product of unit vectors of
    width ``dim`` (``dim * 2**-24`` each): BLAS computes a row's score a few
    ulps differently depending on where the row sits in the block."""
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
    """Top-``k`` of the candidate ``rows``, scored the same way wherever a
    row sits (``einsum``, one dot product per row: duplicates tie exactly),
    by (score descending, index ascending); rows are read in blocks of
    ``max_elements`` values (many tied images keep many rows)."""
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
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f'topk must be >= 1, got {k!r}')
    if not np.isfinite(queries).all():
        raise ValueError('Query features are not finite (NaN or inf).')
    return min(int(k), gallery.shape[0])


def topk_cosine(queries: np.ndarray, gallery: np.ndarray, k: int,
                max_elements: int = MAX_ELEMENTS
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows of ``queries @ gallery.T``, best first, ties by index.

    The gallery is read in blocks of rows (never copied whole, so a
    ``np.memmap`` works); at most ``max_elements`` gallery values and scores
    are held at once.

    Args:
        queries: ``float32 [T, D]``.
        gallery: ``float32 [N, D]`` (any array that slices by rows).
        k: Hits per query; clipped to ``N``.
        max_elements: Memory ceiling of one block, in values.

    Returns:
        ``(scores float32 [T, k'], indices int64 [T, k'])``, ``k' = min(k,
        N)``; equal scores are ordered by ascending gallery index, also at the
        k-th place. The returned scores (and the order among the images near
        the k-th) come from one dot product per image, so identical images
        tie exactly, wherever they are in the gallery.

    Raises:
        ValueError: For mismatched shapes or ``k < 1``.
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
        ``(summary float32 [2G, N], spread float32 [P, N])``: one column per
        image.

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
        summary: ``[2G, N]`` and
        spread: ``[P, N]`` of :func:`summarize` (global+local features), or
            None: every search scans ``features``.
        exact: Always scan the full features (the result is the same).
        max_elements: Memory ceiling of one block (see :func:`topk_cosine`).
        max_candidates: Candidates per query before that query is ranked by
            a full scan.
        max_fraction: Fraction of the gallery past which a query is ranked
            by a full scan (gathering rows then costs more than a scan).
    """

    def __init__(self, features: np.ndarray,
                 summary: Optional[np.ndarray] = None,
                 spread: Optional[np.ndarray] = None,
                 exact: bool = False,
                 max_elements: int = MAX_ELEMENTS,
                 max_candidates: int = MAX_CANDIDATES,
                 max_fraction: float = 0.25) -> None:
        self.features = features
        self.summary = None if exact or spread is None else summary
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
            lower bound (a superset of the exact top-k), or None when there
            are too many (``max_candidates``, ``max_fraction``): that query is
            ranked by a full scan.
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

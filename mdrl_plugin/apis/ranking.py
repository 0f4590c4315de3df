"""Ranking backends of ``PersonSearcher`` besides the default NumPy one.

The default (``backend='numpy'``) is :class:`mdrl_deploy.ranking.Ranker`, the
ranking of both search paths. Here: ``'torch'`` (exact, on the searcher's
device, e.g. a GPU) and ``'faiss'`` (optional package). Every backend takes
and returns NumPy arrays: ``search(queries [T, D], k) -> (scores, indices)``.
"""
from typing import Optional, Tuple

import numpy as np
import torch

from mdrl_deploy.ranking import Ranker, topk_cosine
from mdrl_plugin.evaluation.functional import rows_per_chunk, similarity_chunks

__all__ = ['topk_cosine', 'torch_topk_cosine', 'TorchRanker', 'FaissRanker',
           'build_ranker', 'RANKERS']

#: Largest number of similarity scores held at once by
#: :func:`torch_topk_cosine`
#: (2**25 float32 = 128 MiB): queries are ranked in chunks below it.
MAX_SCORES = 1 << 25


def _ties_by_index(scores: torch.Tensor, indices: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Order hits by descending score, equal scores by gallery index."""
    order = torch.argsort(indices, dim=1, stable=True)
    scores, indices = scores.gather(1, order), indices.gather(1, order)
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    return scores.gather(1, order), indices.gather(1, order)


def torch_topk_cosine(queries: torch.Tensor, gallery: torch.Tensor, k: int,
                      max_scores: int = MAX_SCORES
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`mdrl_deploy.ranking.topk_cosine` in torch, on any device.

    One matrix product ``queries @ gallery.T`` and one ``torch.topk`` per
    chunk of queries (chunks from
    :func:`~mdrl_plugin.evaluation.functional.similarity_chunks`, shared with
    the retrieval metric); the gallery is never sorted in full and never looped
    over in Python. Memory beyond the inputs is at most ``max_scores``
    floats (plus the ``[T, k]`` outputs).

    Args:
        queries: ``[T, D]`` float query features.
        gallery: ``[N, D]`` float gallery features (same device).
        k: How many hits per query; clipped to ``N``.
        max_scores: Bound on ``chunk x N`` scores computed at once.

    Returns:
        ``(scores [T, k'], indices [T, k'])`` with ``k' = min(k, N)``, each
        row in descending score order; equal scores (e.g. duplicate images)
        in ascending gallery index. When more images tie with the k-th score
        than fit, which of them are returned is unspecified.
    """
    if queries.ndim != 2 or gallery.ndim != 2:
        raise ValueError(f'topk_cosine needs [T, D] queries and [N, D] gallery, '
                         f'got {tuple(queries.shape)} and {tuple(gallery.shape)}')
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f'Query features are {queries.shape[1]}-d but the '
                         f'gallery features are {gallery.shape[1]}-d: they '
                         'come from different models')
    if k < 1:
        raise ValueError(f'topk must be >= 1, got {k}')
    k = min(int(k), gallery.shape[0])
    queries = queries.to(gallery.dtype)
    scores, indices = [], []
    for _, sims in similarity_chunks(
            queries, gallery.T, rows_per_chunk(gallery.shape[0], max_scores)):
        s, i = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        s, i = _ties_by_index(s, i)
        scores.append(s)
        indices.append(i)
    if not scores:
        empty = gallery.new_zeros(0, k)
        return empty, empty.long()
    return torch.cat(scores), torch.cat(indices)


class TorchRanker:
    """Exact ranking with one matrix product + top-k on a torch device.

    Args:
        features: ``float32 [N, D]`` gallery features (copied to ``device``).
        device: Where the features live and the product runs.
    """

    name = 'torch'

    def __init__(self, features: np.ndarray, device: str = 'cpu') -> None:
        self.gallery = torch.tensor(np.asarray(features, dtype=np.float32),
                                    device=device)

    def search(self, queries: np.ndarray,
               k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores [T, k'], indices [T, k'])``, see
        :func:`torch_topk_cosine`."""
        s, i = torch_topk_cosine(
            torch.as_tensor(queries, device=self.gallery.device).float(),
            self.gallery, k)
        return s.cpu().numpy(), i.cpu().numpy()


class FaissRanker:
    """Ranking with a FAISS inner-product index (optional dependency).

    ``IndexFlatIP`` (the default) is exact; a factory string such as
    ``'IVF1024,PQ64'`` builds an approximate index that is trained on the
    gallery features (``metric: inner product``, i.e. cosine on the
    L2-normalised features).

    Args:
        features: ``float32 [N, D]`` gallery features.
        factory: ``None`` for ``IndexFlatIP`` or a ``faiss.index_factory``
            string.
        nprobe: For IVF indexes, the number of lists searched.

    Raises:
        ImportError: If ``faiss`` is not installed.
    """

    name = 'faiss'

    def __init__(self, features: np.ndarray, factory: Optional[str] = None,
                 nprobe: Optional[int] = None) -> None:
        try:
            import faiss
        except ImportError as err:
            raise ImportError(
                "backend='faiss' needs the faiss package, which is not "
                'installed: `pip install faiss-cpu` (or faiss-gpu), or use '
                "backend='torch' (exact, no extra package).") from err
        feats = np.ascontiguousarray(features, dtype=np.float32)
        dim = feats.shape[1]
        if factory is None:
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.index_factory(dim, factory,
                                        faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(feats)
        if nprobe is not None and hasattr(index, 'nprobe'):
            index.nprobe = int(nprobe)
        index.add(feats)
        self.index = index
        self.num_images = feats.shape[0]

    def search(self, queries: np.ndarray,
               k: int) -> Tuple[np.ndarray, np.ndarray]:
        """``(scores [T, k'], indices [T, k'])`` in descending score order.

        Approximate indexes may return fewer than ``k'`` hits; missing slots
        (FAISS index ``-1``) are dropped by the caller.
        """
        if k < 1:
            raise ValueError(f'topk must be >= 1, got {k}')
        k = min(int(k), self.num_images)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        scores, indices = self.index.search(q, k)
        return np.asarray(scores), np.asarray(indices, dtype=np.int64)


#: Ranking backends by name.
RANKERS = {'numpy': Ranker, 'torch': TorchRanker, 'faiss': FaissRanker}


def build_ranker(name: str, features: np.ndarray, device: str = 'cpu',
                 summary: Optional[np.ndarray] = None,
                 spread: Optional[np.ndarray] = None, **kwargs):
    """Build the ranking backend ``name`` over ``features``.

    Args:
        name: ``'numpy'`` (default of the searchers, exact),
            ``'torch'`` (exact, on ``device``) or ``'faiss'``.
        features: ``float32 [N, D]`` gallery features.
        device: Device of the torch backend.
        summary: ``[2G, N]`` and
        spread: ``[P, N]`` of global+local features, which the NumPy
            backend scans instead of all features (same result).
        **kwargs: Backend arguments (``factory``, ``nprobe`` for FAISS).

    Returns:
        An object with ``search(queries, k) -> (scores, indices)``.
    """
    if name not in RANKERS:
        raise ValueError(f'Unknown search backend {name!r}; choose one of '
                         f'{sorted(RANKERS)}')
    if name != 'faiss' and kwargs:
        raise TypeError(f'backend {name!r} takes no options, got '
                        f'{sorted(kwargs)}')
    if name == 'numpy':
        return Ranker(features, summary, spread)
    if name == 'torch':
        return TorchRanker(features, device=device)
    return FaissRanker(features, **kwargs)

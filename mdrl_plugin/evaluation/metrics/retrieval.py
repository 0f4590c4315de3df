"""PersonRetrievalMetric: text-to-image Rank-k, mAP and mINP."""
import operator
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement
from torch import Tensor

from mdrl_plugin.registry import METRICS

from ..functional.retrieval import _check_topk, rank_metrics_from_features

__all__ = ['PersonRetrievalMetric']


@METRICS.register_module()
class PersonRetrievalMetric(BaseMetric):
    """Text-to-image retrieval metric of description-based person search.

    Every caption of the evaluation set is a query and every image is a
    gallery item; a gallery image matches a query when it shows the same
    person (equal ``pid``). Features are L2-normalised, so similarity is the
    cosine similarity, and the metric reports ``R{k}`` for every ``k`` in
    ``topk``, ``mAP`` and ``mINP``, in percent, computed by
    :func:`~mdrl_plugin.evaluation.functional.rank_metrics_from_features`
    (chunked, never building the full similarity matrix; ties are ranked
    pessimistically, see that function).

    The model's ``predict`` must return, per image, a data sample carrying

    * ``img_feat``: ``[D]`` tensor, the image's retrieval feature;
    * ``text_feats``: ``[n_i, D]`` tensor, the features of that image's
      ``n_i`` captions (``[0, D]`` when it has none);
    * ``pid``: the person identity (int or one-element tensor).

    :meth:`process` stores exactly one result per data sample, so MMEngine's
    ``collect_results`` can drop the samples that the sampler repeats to pad
    the last rank.

    Args:
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k values.
            Defaults to ``(1, 5, 10)``.
        chunk_size (int, optional): Queries per chunk of the similarity
            computation. Defaults to None (about 8M scores per chunk, see
            :func:`rank_metrics_from_features`).
        device (str, optional): Device for the similarity computation, e.g.
            ``'cuda'``; ``None`` computes on the CPU where the collected
            results lie. Defaults to None.
        collect_device (str): Device used to collect results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the metric names, e.g. ``'test'``
            gives ``'test/R1'``. Defaults to None (no prefix).
        collect_dir (str, optional): Folder shared by all ranks for
            ``collect_device='cpu'``. Defaults to None (a temporary folder).
    """

    default_prefix: Optional[str] = None

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, 5, 10),
                 chunk_size: Optional[int] = None,
                 device: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir)
        topk = _check_topk(topk)
        if chunk_size is not None and (isinstance(chunk_size, bool)
                                       or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ValueError(
                f'chunk_size must be a positive int or None, got '
                f'{chunk_size!r}')
        self.topk = topk
        self.chunk_size = chunk_size
        self.device = device

    @staticmethod
    def _field(sample: Union[dict, BaseDataElement], key: str,
               index: int) -> Any:
        if isinstance(sample, BaseDataElement):
            sample = sample.to_dict()
        if not isinstance(sample, dict):
            raise TypeError(
                f'PersonRetrievalMetric: data sample {index} must be a dict '
                f'or a data element, got {type(sample).__name__}')
        if key not in sample:
            raise KeyError(
                f'PersonRetrievalMetric: data sample {index} has no {key!r}; '
                "the model's predict must return 'img_feat' [D], "
                "'text_feats' [n, D] and 'pid' for every image "
                f'(got keys {sorted(sample)})')
        return sample[key]

    def process(self, data_batch: Any,
                data_samples: Sequence[Union[dict, BaseDataElement]]) -> None:
        """Store the features and pid of every image of a batch.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict | BaseDataElement]): The model's
                outputs, one per image, carrying ``img_feat`` ``[D]``,
                ``text_feats`` ``[n, D]`` and ``pid``.
        """
        for i, sample in enumerate(data_samples):
            img_feat = self._field(sample, 'img_feat', i)
            text_feats = self._field(sample, 'text_feats', i)
            pid = self._field(sample, 'pid', i)
            if not isinstance(img_feat, Tensor) or img_feat.dim() != 1:
                raise ValueError(
                    f'PersonRetrievalMetric: data sample {i} img_feat must '
                    'be a 1-D tensor [D], got '
                    f'{_describe(img_feat)}')
            if not isinstance(text_feats, Tensor) or text_feats.dim() != 2 \
                    or text_feats.shape[1] != img_feat.shape[0]:
                raise ValueError(
                    f'PersonRetrievalMetric: data sample {i} text_feats must '
                    f'be a tensor [n, {img_feat.shape[0]}] (n captions, '
                    f'img_feat size), got {_describe(text_feats)}')
            if isinstance(pid, Tensor):
                if pid.numel() != 1:
                    raise ValueError(
                        f'PersonRetrievalMetric: data sample {i} pid must be '
                        f'a single integer, got a tensor of shape '
                        f'{list(pid.shape)}')
                pid = pid.item()
            try:
                if isinstance(pid, bool):
                    raise TypeError
                pid = operator.index(pid)
            except TypeError:
                raise ValueError(
                    f'PersonRetrievalMetric: data sample {i} pid must be an '
                    f'integer, got {pid!r}') from None
            self.results.append(
                dict(
                    img_feat=img_feat.detach().cpu(),
                    text_feats=text_feats.detach().cpu(),
                    pid=pid))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Rank every caption against every image.

        Args:
            results (list[dict]): The stored results of all ranks, one per
                image.

        Returns:
            dict[str, float]: ``R{k}`` for every ``k`` in ``topk``, ``mAP``
            and ``mINP``, in percent.
        """
        if len(results) == 0:
            raise ValueError('PersonRetrievalMetric: no results to evaluate')
        dims = {r['img_feat'].shape[0] for r in results}
        if len(dims) != 1:
            raise ValueError('PersonRetrievalMetric: img_feat sizes differ '
                             f'between images: {sorted(dims)}')
        gallery = torch.stack([r['img_feat'] for r in results]).float()
        gallery_pids = torch.tensor([r['pid'] for r in results],
                                    dtype=torch.int64)
        counts = torch.tensor([r['text_feats'].shape[0] for r in results],
                              dtype=torch.int64)
        if int(counts.sum()) == 0:
            raise ValueError(
                'PersonRetrievalMetric: no caption features (every '
                'text_feats is [0, D]); there are no queries to evaluate')
        query = torch.cat([r['text_feats'] for r in results]).float()
        query_pids = torch.repeat_interleave(gallery_pids, counts)
        query = F.normalize(query, dim=1)
        gallery = F.normalize(gallery, dim=1)
        MMLogger.get_current_instance().info(
            f'PersonRetrievalMetric: {query.shape[0]} text queries against '
            f'{gallery.shape[0]} gallery images '
            f'({int(gallery_pids.unique().numel())} identities)')
        return rank_metrics_from_features(
            query,
            gallery,
            query_pids,
            gallery_pids,
            topk=self.topk,
            chunk_size=self.chunk_size,
            device=self.device)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f'a tensor of shape {list(value.shape)}'
    return f'{type(value).__name__}'

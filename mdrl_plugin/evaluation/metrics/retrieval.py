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

from ..functional.retrieval import (
    _check_chunk_size,
    _check_topk,
    rank_metrics_from_features,
)

__all__ = ['PersonRetrievalMetric']


@METRICS.register_module()
class PersonRetrievalMetric(BaseMetric):
    """Text-to-image Rank-k, mAP and mINP (percent): every caption is a
    query, every image a gallery item, matching when the ``pid`` is equal;
    cosine similarity, ranked by
    :func:`~mdrl_plugin.evaluation.functional.rank_metrics_from_features`.

    The model's ``predict`` returns, per image, a data sample with
    ``img_feat`` (``[D]``), ``text_feats`` (``[n, D]``, the image's
    captions; ``[0, D]`` for none) and ``pid`` (int or one-element tensor).
    One result is stored per sample, so MMEngine's ``collect_results`` can
    drop the samples the sampler repeats to pad the last rank.

    Args:
        topk (int | Sequence[int]): The ``k`` of the reported Rank-k values.
        chunk_size (int, optional): Queries per chunk (None: about 8M
            scores).
        device (str, optional): Where to rank, e.g. ``'cuda'``; None: the
            CPU.
        collect_device (str): ``'cpu'`` or ``'gpu'``, to collect results.
        prefix (str, optional): Metric name prefix (``'test'``: ``test/R1``).
        collect_dir (str, optional): Folder shared by all ranks for
            ``collect_device='cpu'``; None: a temporary folder.
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
        self.topk = _check_topk(topk)
        self.chunk_size = _check_chunk_size(chunk_size)
        self.device = device

    def process(self, data_batch: Any,
                data_samples: Sequence[Union[dict, BaseDataElement]]) -> None:
        """Store the features and pid of every image of a batch.

        Args:
            data_batch (Any): The batch from the dataloader (unused).
            data_samples (Sequence[dict | BaseDataElement]): One per image,
                with ``img_feat`` ``[D]``, ``text_feats`` ``[n, D]``, ``pid``.
        """
        for i, sample in enumerate(data_samples):
            if isinstance(sample, BaseDataElement):
                sample = sample.to_dict()
            if not isinstance(sample, dict):
                raise TypeError(
                    f'PersonRetrievalMetric: data sample {i} must be a dict '
                    f'or a data element, got {type(sample).__name__}')
            for key in ('img_feat', 'text_feats', 'pid'):
                if key not in sample:
                    raise KeyError(
                        f'PersonRetrievalMetric: data sample {i} has no '
                        f"{key!r}; the model's predict must return "
                        "'img_feat' [D], 'text_feats' [n, D] and 'pid' for "
                        f'every image (got keys {sorted(sample)})')
            img_feat, text_feats, pid = (sample['img_feat'],
                                         sample['text_feats'], sample['pid'])
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
            if isinstance(pid, bool) or not hasattr(pid, '__index__'):
                raise ValueError(
                    f'PersonRetrievalMetric: data sample {i} pid must be an '
                    f'integer, got {pid!r}')
            self.results.append(dict(img_feat=img_feat.detach().cpu(),
                                     text_feats=text_feats.detach().cpu(),
                                     pid=operator.index(pid)))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Rank every caption against every image.

        Args:
            results (list[dict]): The stored results of all ranks.

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
        gallery = F.normalize(
            torch.stack([r['img_feat'] for r in results]).float(), dim=1)
        gallery_pids = torch.tensor([r['pid'] for r in results],
                                    dtype=torch.int64)
        counts = torch.tensor([r['text_feats'].shape[0] for r in results],
                              dtype=torch.int64)
        if int(counts.sum()) == 0:
            raise ValueError(
                'PersonRetrievalMetric: no caption features (every '
                'text_feats is [0, D]); there are no queries to evaluate')
        query = F.normalize(
            torch.cat([r['text_feats'] for r in results]).float(), dim=1)
        query_pids = torch.repeat_interleave(gallery_pids, counts)
        MMLogger.get_current_instance().info(
            f'PersonRetrievalMetric: {query.shape[0]} text queries against '
            f'{gallery.shape[0]} gallery images '
            f'({int(gallery_pids.unique().numel())} identities)')
        return rank_metrics_from_features(
            query, gallery, query_pids, gallery_pids, topk=self.topk,
            chunk_size=self.chunk_size, device=self.device)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f'a tensor of shape {list(value.shape)}'
    return f'{type(value).__name__}'

"""Compute a frozen text encoder's BERT outputs once per caption and reuse them."""
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Set, Tuple

from mmengine.dist import barrier, get_local_rank, get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mdrl_plugin.registry import HOOKS
from ..fileio import atomic_write_bytes
from ..text_cache import TextFeatureCache, text_cache_fingerprint

__all__ = ['FrozenTextCacheHook']


def _local_rank() -> int:
    try:
        return get_local_rank()
    except RuntimeError:  # process group set up without MMEngine's local group
        return int(os.environ.get('LOCAL_RANK', get_rank()))


def _dataset_captions(dataset) -> List[str]:
    """Distinct captions (``text`` / ``texts`` of every data info), in order."""
    seen: Dict[str, None] = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        texts = info.get('texts') or ([info['text']] if 'text' in info else [])
        for text in texts:
            seen.setdefault(text, None)
    return list(seen)


@HOOKS.register_module()
class FrozenTextCacheHook(Hook):
    """Serve a frozen BERT's token outputs from an exact on-disk cache.

    Before training (for the train and val captions), validation and testing
    (their captions), every frozen ``BertTextEncoder`` of the model gets a
    :class:`~mdrl_plugin.engine.text_cache.TextFeatureCache` with the
    outputs of :meth:`BertTextEncoder.frozen_bert_tokens` for every caption of
    the datasets, keyed by token ids. Captions not in the cache (e.g. changed
    by a text transform) are computed live, so the cache changes speed, never
    results: cached features equal uncached ones bit for bit.

    The cache lives in ``<cache_dir>/<fingerprint>/``; the fingerprint covers
    the BERT weights and config, the tokenizer, both ``max_length`` values,
    the torch version and the device type, so any of them changing uses
    another folder (never stale features), and a later run with the same
    fingerprint reuses the files. On each node, local rank 0 computes what is
    missing while the other ranks wait; then every rank memory-maps the
    files read-only.

    Nothing happens for a model without a frozen ``BertTextEncoder`` or
    without a data preprocessor that has ``token_ids`` (the
    ``TextImageDataPreprocessor``).

    Args:
        cache_dir: Cache folder. Defaults to ``<work_dir>/text_cache``; point
            several runs at one folder to share the cache.
        batch_size: Captions per BERT call while building.
        enabled: False turns the hook off (BERT runs at every step).
    """

    priority = 'NORMAL'

    def __init__(self, cache_dir: Optional[str] = None, batch_size: int = 64,
                 enabled: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.cache_dir = cache_dir
        self.batch_size = batch_size
        self.enabled = enabled
        self._prepared: Set[Tuple[int, int]] = set()

    # ---------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        """Cache the train and val captions."""
        datasets = [runner.train_dataloader.dataset]
        if runner.val_loop is not None:
            datasets.append(runner.val_loop.dataloader.dataset)
        self._prepare(runner, datasets)

    def before_val(self, runner) -> None:
        """Cache the val captions (a no-op when already done)."""
        self._prepare(runner, [runner.val_loop.dataloader.dataset])

    def before_test(self, runner) -> None:
        """Cache the test captions."""
        self._prepare(runner, [runner.test_loop.dataloader.dataset])

    def after_train_epoch(self, runner) -> None:
        """Log the epoch's cache hits and misses."""
        for encoder in self._encoders(runner):
            stats = encoder.cache_stats
            if encoder.text_cache is not None and stats['misses']:
                runner.logger.info(
                    f'Frozen text cache: {stats["hits"]} hits, '
                    f'{stats["misses"]} misses (computed live) this epoch')
            encoder.cache_stats = dict(hits=0, misses=0)

    # ---------------------------------------------------------------- work
    def _encoders(self, runner) -> list:
        from mdrl_plugin.models.backbones import BertTextEncoder
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        return [m for m in model.modules()
                if isinstance(m, BertTextEncoder) and m.frozen]

    def _prepare(self, runner, datasets: Iterable) -> None:
        if not self.enabled:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        preprocessor = getattr(model, 'data_preprocessor', None)
        encoders = self._encoders(runner)
        if not encoders or not hasattr(preprocessor, 'token_ids'):
            return
        for encoder in encoders:
            todo = [d for d in datasets
                    if (id(encoder), id(d)) not in self._prepared
                    or encoder.text_cache is None
                    or not encoder.text_cache_is_valid()]
            if todo:
                self._prepare_encoder(runner, encoder, preprocessor, todo)
            self._prepared.update((id(encoder), id(d)) for d in todo)

    def _prepare_encoder(self, runner, encoder, preprocessor, datasets) -> None:
        device = next(encoder.bert.parameters()).device
        fingerprint, parts = text_cache_fingerprint(
            encoder, preprocessor.tokenizer, preprocessor.max_length, device)
        folder = osp.join(self.cache_dir or osp.join(runner.work_dir, 'text_cache'),
                          fingerprint)
        if _local_rank() == 0:
            captions = [c for d in datasets for c in _dataset_captions(d)]
            missing = TextFeatureCache(folder).missing(
                preprocessor.token_ids(captions))
            if missing:
                runner.logger.info(
                    f'Frozen text cache {folder}: computing {len(missing)} of '
                    f'{len(captions)} captions')
                os.makedirs(folder, exist_ok=True)
                if not osp.exists(osp.join(folder, 'meta.json')):
                    atomic_write_bytes(json.dumps(parts, indent=1).encode(),
                                       osp.join(folder, 'meta.json'))
                TextFeatureCache.write_shard(
                    folder, missing, encoder.frozen_bert_tokens,
                    self.batch_size, device)
        barrier()
        cache = TextFeatureCache(folder)
        encoder.attach_text_cache(cache)
        runner.logger.info(
            f'Frozen text cache {folder}: {len(cache)} captions, '
            f'{cache.nbytes / 2**20:.1f} MiB of features (memory-mapped)')

"""Compute a frozen text encoder's BERT outputs once per caption and reuse them."""
import os.path as osp
import socket
from contextlib import nullcontext
from typing import Dict, List, Optional, Set, Tuple

from mmengine.dist import all_gather_object, get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner.amp import autocast

from mdrl_plugin.registry import HOOKS
from ..text_cache import TextFeatureCache, numeric_mode, text_cache_fingerprint

__all__ = ['FrozenTextCacheHook']


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

    Before training, validation and testing, every frozen ``BertTextEncoder``
    gets a :class:`~mdrl_plugin.engine.text_cache.TextFeatureCache` holding
    :meth:`BertTextEncoder.frozen_bert_tokens` of every caption of the
    loop's dataset, computed in the numeric mode that loop runs BERT in: under
    the optimizer wrapper's autocast for training (``--amp``), under the
    loop's ``fp16`` setting for validation and testing. A forward in any
    other mode runs BERT live (logged once), as do captions not in the cache,
    so the cache changes speed, never results.

    The cache lives in ``<cache_dir>/<fingerprint>/``; the fingerprint covers
    the BERT weights and config, the tokenizer, both ``max_length`` values and
    the numeric mode (:func:`~mdrl_plugin.engine.text_cache.numeric_mode`).
    All ranks take part in every collective. The lowest rank of each folder
    computes what is missing; then the lowest rank of each host that still
    misses captions (a folder not shared between nodes) does; a failed build
    switches the cache off on the ranks of that folder, with a warning.

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
        self._prepared: Set[Tuple[int, int, str]] = set()

    # ---------------------------------------------------------------- hooks
    def before_train(self, runner) -> None:
        """Cache the train captions (and the val captions)."""
        wrapper = getattr(runner, 'optim_wrapper', None)
        use = (isinstance(wrapper, OptimWrapper)
               and not isinstance(wrapper, OptimWrapperDict))
        self._prepare(runner, runner.train_dataloader.dataset,
                      wrapper.optim_context if use else lambda _: nullcontext())
        if runner.val_loop is not None:
            self.before_val(runner)

    def before_val(self, runner) -> None:
        """Cache the val captions (a no-op when already done)."""
        loop = runner.val_loop
        self._prepare(runner, loop.dataloader.dataset,
                      lambda _: autocast(enabled=getattr(loop, 'fp16', False)))

    def before_test(self, runner) -> None:
        """Cache the test captions."""
        loop = runner.test_loop
        self._prepare(runner, loop.dataloader.dataset,
                      lambda _: autocast(enabled=getattr(loop, 'fp16', False)))

    def after_train_epoch(self, runner) -> None:
        """Log the epoch's cache hits and misses."""
        for encoder in self._encoders(self._model(runner)):
            stats = encoder.cache_stats
            if encoder.text_caches and stats['misses']:
                runner.logger.info(
                    f'Frozen text cache: {stats["hits"]} hits, '
                    f'{stats["misses"]} misses (computed live) this epoch')
            encoder.cache_stats = dict(hits=0, misses=0)

    # ---------------------------------------------------------------- work
    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    @staticmethod
    def _encoders(model) -> list:
        from mdrl_plugin.models.backbones import BertTextEncoder
        return [m for m in model.modules()
                if isinstance(m, BertTextEncoder) and m.frozen]

    def _prepare(self, runner, dataset, context) -> None:
        """Build and attach the caches of ``dataset`` in the numeric mode of
        ``context(model)``. Every rank makes the same collective calls."""
        model = self._model(runner)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if not self.enabled or not hasattr(preprocessor, 'token_ids'):
            return
        for encoder in self._encoders(model):
            device = next(encoder.bert.parameters()).device
            with context(model):
                mode = numeric_mode(device)
            key = (id(encoder), id(dataset), str(sorted(mode.items())))
            folder = None  # None: this rank needs nothing
            if (not encoder.text_cache_is_valid() or key not in self._prepared
                    or mode not in [c.mode for c in encoder.text_caches.values()]):
                fingerprint, parts = text_cache_fingerprint(
                    encoder, preprocessor.tokenizer, preprocessor.max_length,
                    mode)
                folder = osp.join(self.cache_dir or osp.join(
                    runner.work_dir, 'text_cache'), fingerprint)
            host, rank = socket.gethostname(), get_rank()
            ranks = all_gather_object((host, folder))
            if not any(f for _, f in ranks):
                continue
            first = {f: r for r, (_, f) in reversed(list(enumerate(ranks)))}
            first_here = {(h, f): r for r, (h, f)
                          in reversed(list(enumerate(ranks)))}
            errors = []
            for builds in (first.get(folder) == rank,  # once per folder,
                           # then once per node where the folder is not shared
                           first_here.get((host, folder)) == rank != first[folder]):
                error = None
                if folder and builds:
                    with context(model):
                        error = self._build(runner, encoder, preprocessor,
                                            dataset, folder, parts, device)
                errors += all_gather_object((folder, error))
            failed = [e for f, e in errors if e and f == folder]
            if folder and failed:
                runner.logger.warning(f'Frozen text cache {folder} is off: '
                                      f'building it failed: {failed[0]}')
            elif folder:
                cache = TextFeatureCache(folder)
                if cache.mode is not None:
                    encoder.attach_text_cache(cache)
                    runner.logger.info(
                        f'Frozen text cache {folder}: {len(cache)} captions, '
                        f'{cache.nbytes / 2**20:.1f} MiB (memory-mapped)')
                self._prepared.add(key)

    def _build(self, runner, encoder, preprocessor, dataset, folder: str,
               parts: dict, device) -> Optional[str]:
        """Write the captions ``folder`` misses; returns the error, if any."""
        try:
            captions = _dataset_captions(dataset)
            missing = TextFeatureCache(folder).missing(
                preprocessor.token_ids(captions))
            if missing:
                runner.logger.info(
                    f'Frozen text cache {folder}: computing {len(missing)} of '
                    f'{len(captions)} captions')
                TextFeatureCache.write_shard(
                    folder, missing, encoder.frozen_bert_tokens,
                    self.batch_size, device, meta=parts)
        except Exception as e:  # noqa: BLE001 (other ranks must not hang)
            return f'{type(e).__name__}: {e}'
        return None

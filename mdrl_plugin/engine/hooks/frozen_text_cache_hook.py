"""Compute a frozen text encoder's BERT outputs once per caption and reuse
them."""
import os.path as osp
import socket
from contextlib import nullcontext
from typing import List, Optional

from mmengine.dist import all_gather_object, get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner.amp import autocast

from mdrl_plugin.registry import HOOKS

from ..text_cache import TextFeatureCache, numeric_mode, text_cache_fingerprint


def _dataset_captions(dataset) -> List[str]:
    """Distinct captions (``text`` / ``texts`` of every data info), in
    order."""
    infos = (dataset.get_data_info(i) for i in range(len(dataset)))
    texts = (t for info in infos
             for t in info.get('texts') or [info.get('text')])
    return list(dict.fromkeys(t for t in texts if t is not None))


@HOOKS.register_module()
class FrozenTextCacheHook(Hook):
    """Before each loop, give every frozen ``BertTextEncoder`` a
    :class:`~mdrl_plugin.engine.TextFeatureCache` of its BERT outputs for the
    loop's captions, computed in the loop's numeric mode (``--amp`` included);
    other forwards and captions run live. The lowest rank of each folder
    builds it, then the lowest rank of each node it is not shared with. See
    ``docs/models.md`` (Frozen-text cache).

    Args:
        cache_dir: Cache folder. Defaults to ``<work_dir>/text_cache``; point
            several runs at one folder to share the cache.
        batch_size: Captions per BERT call while building.
        enabled: False turns the hook off (BERT runs at every step).
    """

    def __init__(self, cache_dir: Optional[str] = None, batch_size: int = 64,
                 enabled: bool = True) -> None:
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.cache_dir, self.batch_size, self.enabled = (
            cache_dir, batch_size, enabled)

    def before_train(self, runner) -> None:
        """Cache the train captions (and the val captions)."""
        wrapper = getattr(runner, 'optim_wrapper', None)
        amp = (isinstance(wrapper, OptimWrapper)
               and not isinstance(wrapper, OptimWrapperDict))
        self._prepare(
            runner, runner.train_dataloader.dataset,
            wrapper.optim_context if amp else lambda _: nullcontext())
        if runner.val_loop is not None:
            self.before_val(runner)

    def before_val(self, runner) -> None:
        """Cache the val captions (a no-op when already done)."""
        self._prepare_loop(runner, runner.val_loop)

    def before_test(self, runner) -> None:
        """Cache the test captions."""
        self._prepare_loop(runner, runner.test_loop)

    def after_train_epoch(self, runner) -> None:
        """Log the epoch's cache hits and misses."""
        for encoder in self._encoders(runner)[1]:
            if encoder.text_caches and encoder.cache_stats['misses']:
                runner.logger.info(
                    'Frozen text cache: {hits} hits, {misses} misses '
                    '(computed live) this epoch'.format(**encoder.cache_stats))
            encoder.cache_stats = dict(hits=0, misses=0)

    @staticmethod
    def _encoders(runner) -> tuple:
        from mdrl_plugin.models.backbones import BertTextEncoder
        model = (runner.model.module if is_model_wrapper(runner.model)
                 else runner.model)
        return model, [m for m in model.modules()
                       if isinstance(m, BertTextEncoder) and m.frozen]

    def _prepare_loop(self, runner, loop) -> None:
        self._prepare(runner, loop.dataloader.dataset,
                      lambda _: autocast(enabled=getattr(loop, 'fp16', False)))

    def _prepare(self, runner, dataset, context) -> None:
        # every rank makes the same collective calls (none may hang)
        model, encoders = self._encoders(runner)
        preprocessor = getattr(model, 'data_preprocessor', None)
        if not (self.enabled and encoders
                and hasattr(preprocessor, 'token_ids')):
            return
        seqs = preprocessor.token_ids(_dataset_captions(dataset))
        for encoder in encoders:
            device = next(encoder.bert.parameters()).device
            with context(model):
                mode = numeric_mode(device)
            cache = encoder.text_cache_is_valid() and next(
                (c for c in encoder.text_caches.values() if c.mode == mode),
                None)
            folder = None  # None: this rank needs nothing
            if not cache or cache.missing(seqs):
                fingerprint, parts = text_cache_fingerprint(encoder, mode)
                folder = osp.join(self.cache_dir or osp.join(
                    runner.work_dir, 'text_cache'), fingerprint)
            mine = (socket.gethostname(), folder)
            ranks = all_gather_object(mine)
            if not any(f for _, f in ranks):
                continue
            # the lowest rank of a folder builds; then, where the folder is not
            # shared, the lowest rank of each node
            builders = [[f for _, f in ranks].index(folder), ranks.index(mine)]
            errors = []
            for phase, builder in enumerate(builders):
                error = None
                if folder and get_rank() == builder not in builders[:phase]:
                    with context(model):
                        error = self._build(runner, encoder, folder, seqs,
                                            parts)
                errors += all_gather_object((folder, error))
            failed = [e for f, e in errors if e and folder and f == folder]
            if failed:
                runner.logger.warning(f'Frozen text cache {folder} is off: '
                                      f'building it failed: {failed[0]}')
            elif (folder and
                  (cache := TextFeatureCache(folder)).mode is not None):
                encoder.attach_text_cache(cache)
                runner.logger.info(
                    f'Frozen text cache {folder}: {len(cache)} captions, '
                    f'{cache.nbytes / 2**20:.1f} MiB (memory-mapped)')

    def _build(self, runner, encoder, folder: str, seqs: list,
               parts: dict) -> Optional[str]:
        """Write the sequences ``folder`` misses; returns the error, if any."""
        try:
            if missing := TextFeatureCache(folder).missing(seqs):
                runner.logger.info(f'Frozen text cache {folder}: computing '
                                   f'{len(missing)} of {len(seqs)} captions')
                TextFeatureCache.write_shard(
                    folder, missing, encoder.frozen_bert_tokens,
                    self.batch_size, next(encoder.bert.parameters()).device,
                    meta=parts)
        except Exception as e:  # noqa: BLE001 (the other ranks must not hang)
            return f'{type(e).__name__}: {e}'
        return None

"""Time one training step with the frozen-text cache against computing BERT
live.

Three modes run interleaved (the order rotates every repeat, so load from other
processes hits all of them alike):

* ``cached``: BERT's outputs come from a :class:`TextFeatureCache` built for
  the captions beforehand (what ``FrozenTextCacheHook`` does);
* ``live``: the frozen BERT runs every step in its canonical shape (padded to
  ``max_length``), what the encoder does without a cache;
* ``live-longest``: BERT runs on the batch padded to its longest caption, the
  encoder's behaviour before the cache existed (not bit-compatible with a
  cache; shown as the old baseline).

A step is the data preprocessor (tokenisation included), ``MDRL.loss``,
backward and an AdamW step. Sizes:

* ``demo``: ``configs/mdrl_demo.py`` (MiniLM-L6 from
  ``checkpoints/all-MiniLM-L6-v2``, batch 32), captions from
  ``data/demo/reid_raw.json`` when present;
* ``paper``: ViT-B/16 at 384x128, BERT-base dims (random weights), full MDRL,
  captions of random ids padded to at most 64 tokens.

Usage:
    python benchmarks/bench_text_cache.py --size demo [--batch 32] [--repeat 5]
    python benchmarks/bench_text_cache.py --size demo --amp   # bf16 autocast
    python benchmarks/bench_text_cache.py --size paper --batch 8 --repeat 2
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from mmengine.config import Config
from mmengine.structures import BaseDataElement

import mdrl_plugin  # noqa: F401
from mdrl_plugin.engine import TextFeatureCache
from mdrl_plugin.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, 'benchmarks'))
from bench_train_step import model_cfg  # noqa: E402


def demo_setup(batch: int, repeat: int, cache_all: bool):
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'mdrl_demo.py'))
    model = MODELS.build(cfg.model)
    ann = osp.join(REPO, cfg.data_root, 'reid_raw.json')
    if osp.isfile(ann):
        captions = [c for r in json.load(open(ann)) if r['split'] == 'train'
                    for c in r['captions']]
    else:
        words = list(model.data_preprocessor.tokenizer.vocab)[2000:6000]
        rng = np.random.default_rng(0)
        captions = [' '.join(rng.choice(words, rng.integers(15, 45)))
                    for _ in range(1600)]
    img_size = tuple(cfg.img_size)

    def batch_texts(step: int):
        rng = np.random.default_rng(step)
        return [captions[i]
                for i in rng.choice(len(captions), batch, replace=False)]

    def make_batch(step: int):
        texts = batch_texts(step)
        images = [torch.randint(0, 256, (3, *img_size), dtype=torch.uint8)
                  for _ in texts]
        samples = [BaseDataElement(
            metainfo=dict(text=t, gt_label=i % model.num_classes))
            for i, t in enumerate(texts)]
        return model.data_preprocessor(
            dict(inputs=images, data_samples=samples), True)

    # the captions of the timed steps (all: --cache-all)
    used = captions if cache_all else [t for i in range(repeat + 1)
                                       for t in batch_texts(i)]
    seqs = [np.asarray(s, np.int32) for s in
            model.data_preprocessor.token_ids(list(dict.fromkeys(used)))]
    return model, make_batch, seqs


def paper_setup(batch: int, repeat: int):
    cfg, img_size = model_cfg('paper', full=True)
    model = MODELS.build(cfg)
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(batch * (repeat + 1)):
        n = int(rng.integers(20, 65))
        seqs.append(np.concatenate([[101], rng.integers(1000, 30000, n - 2),
                                    [102]]).astype(np.int32))

    def make_batch(step: int):
        chosen = seqs[(step % (repeat + 1)) * batch:][:batch]
        width = max(len(s) for s in chosen)
        ids = torch.zeros(batch, width, dtype=torch.long)
        for i, s in enumerate(chosen):
            ids[i, :len(s)] = torch.from_numpy(s.astype(np.int64))
        inputs = dict(images=torch.randn(batch, 3, *img_size), input_ids=ids,
                      attention_mask=(ids != 0).long())
        samples = [BaseDataElement(metainfo=dict(gt_label=i))
                   for i in range(batch)]
        return dict(inputs=inputs, data_samples=samples)

    return model, make_batch, seqs


def text_only(enc, cache, make_batch, repeat: int, amp) -> None:
    """Time frozen BERT (canonical shape) against the cache for one batch."""
    def run(mode: str, i: int) -> float:
        inputs = make_batch(i)['inputs']
        ids, mask = inputs['input_ids'], inputs['attention_mask']
        enc.attach_text_cache(cache if mode == 'cached' else None)
        t0 = time.perf_counter()
        with amp():
            if mode == 'cached':
                enc._cached_bert_tokens(ids, mask, cache)
            else:
                enc.frozen_bert_tokens(ids, mask)
        return time.perf_counter() - t0

    times = {'cached': [], 'live': []}
    run('cached', 0), run('live', 0)
    for r in range(repeat):
        for mode in (('cached', 'live') if r % 2 else ('live', 'cached')):
            times[mode].append(run(mode, r + 1))
    for mode, t in times.items():
        print(f'text part only, {mode:6s} median {statistics.median(t):.4f} s '
              f'min {min(t):.4f}  all {["%.4f" % x for x in t]}')
    enc.attach_text_cache(None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', choices=['demo', 'paper'], default='demo')
    parser.add_argument('--batch', type=int, default=None,
                        help='default: 32 (demo), 8 (paper)')
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--cache-all', action='store_true',
                        help='demo: cache all training captions, not only the '
                        'timed batches (build time at the demo size)')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 autocast on the CPU (what tools/train.py '
                        '--amp does): the cache is built and served under it')
    parser.add_argument('--text-only', action='store_true',
                        help='time only the frozen BERT against the cache '
                        'lookup (the part of a step the cache replaces)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = args.batch or (32 if args.size == 'demo' else 8)
    if args.size == 'demo':
        model, make_batch, seqs = demo_setup(batch, args.repeat,
                                             args.cache_all)
    else:
        model, make_batch, seqs = paper_setup(batch, args.repeat)
    model.train()
    enc = model.text_encoder
    canonical_length = enc.max_length
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=1e-4)

    def amp():
        return torch.autocast('cpu', dtype=torch.bfloat16, enabled=args.amp)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with amp():
            TextFeatureCache.write_shard(tmp, seqs, enc.frozen_bert_tokens, 64)
        build_s = time.perf_counter() - t0
        cache = TextFeatureCache(tmp)
        mean_len = float(np.mean([len(s) for s in seqs]))
        print(f'size {args.size}: batch {batch}, {len(seqs)} captions cached '
              f'in {build_s:.1f} s ({cache.nbytes / 2**20:.1f} MiB, mean '
              f'{mean_len:.1f} tokens, width {enc.embed_dims}); torch threads '
              f'{args.threads}, amp {args.amp}')

        if args.text_only:
            return text_only(enc, cache, make_batch, args.repeat, amp)

        def step(mode: str, i: int) -> float:
            t0 = time.perf_counter()
            data = make_batch(i)  # tokenisation is part of the step (demo)
            enc.attach_text_cache(cache if mode == 'cached' else None)
            enc.max_length = (data['inputs']['input_ids'].shape[1]
                              if mode == 'live-longest' else canonical_length)
            with amp():
                losses = model.loss(**data)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            return time.perf_counter() - t0

        modes = ['cached', 'live', 'live-longest']
        for mode in modes:  # warm-up
            step(mode, 0)
        times = {m: [] for m in modes}
        for r in range(args.repeat):
            for k in range(len(modes)):
                mode = modes[(r + k) % len(modes)]
                times[mode].append(step(mode, r + 1))
        enc.attach_text_cache(None)
        enc.max_length = canonical_length
    med = {m: statistics.median(t) for m, t in times.items()}
    for m in modes:
        print(f'{m:13s} median {med[m]:.3f} s/step  min {min(times[m]):.3f}  '
              f'all {["%.3f" % t for t in times[m]]}')
    print(f'speed-up cached vs live: {med["live"] / med["cached"]:.2f}x; '
          f'cached vs live-longest (old path): '
          f'{med["live-longest"] / med["cached"]:.2f}x')
    assert enc.cache_stats['misses'] == 0, enc.cache_stats


if __name__ == '__main__':
    main()

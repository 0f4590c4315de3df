#!/usr/bin/env python
"""Speed of the training data pipeline, per worker process.

Writes JPEGs with the sizes of the real datasets' images (pedestrian crops,
80-180 px wide, 200-450 px high) into a temporary folder, runs the training
pipeline (LoadPersonImage -> Resize to 384x128 -> RandomFlip -> Pack) in this
one process and prints images/s and the time share of each step. A dataloader
worker runs exactly this loop, so the figure is per worker.

With ``--annotation`` it also times building a ``CUHKPEDES`` dataset from an
annotation of CUHK-PEDES size (40,206 images, 80,412 captions; empty image
files) and one epoch plan of ``IdentityBalancedSampler``.

Usage::

    python benchmarks/bench_pipeline.py [--num-images 300] [--repeats 3]
        [--cv2-threads N] [--annotation]

Prints numbers, asserts nothing.
"""
import argparse
import json
import os
import os.path as osp
import platform
import tempfile
import time
from typing import Dict, List

import cv2
import numpy as np
import torch

import mdrl_plugin  # noqa: F401  (registers the components)
from mdrl_plugin.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS

STEPS = ('decode', 'resize', 'flip', 'pack')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-images', type=int, default=300)
    parser.add_argument('--repeats', type=int, default=3,
                        help='timed passes over the images (best is shown)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cv2-threads', type=int, default=None,
                        help='cv2.setNumThreads before timing (default: '
                        "leave OpenCV's setting)")
    parser.add_argument('--annotation', action='store_true',
                        help='also time dataset construction at CUHK-PEDES '
                        'size and one sampler epoch')
    return parser.parse_args()


def person_like_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth colour blobs plus mild noise: compresses like a real photo."""
    coarse = rng.integers(0, 256, size=(max(h // 24, 2), max(w // 24, 2), 3),
                          dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 6, size=img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_images(folder: str, n: int, seed: int) -> List[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w = int(rng.integers(80, 181))
        h = int(np.clip(w * rng.uniform(2.0, 3.0), 200, 450))
        path = osp.join(folder, f'{i:05d}.jpg')
        cv2.imwrite(path, person_like_image(rng, w, h),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        paths.append(path)
    return paths


def time_pipeline(paths: List[str], repeats: int) -> Dict[str, float]:
    """Best-of-``repeats`` seconds per step over all images."""
    steps = [
        TRANSFORMS.build(dict(type='LoadPersonImage')),
        TRANSFORMS.build(dict(type='Resize', scale=(128, 384),
                              keep_ratio=False)),
        TRANSFORMS.build(dict(type='RandomFlip', prob=0.5,
                              direction='horizontal')),
        TRANSFORMS.build(dict(type='PackTextImageInputs')),
    ]
    best = None
    for _ in range(repeats + 1):  # the first pass warms caches
        totals = dict.fromkeys(STEPS, 0.0)
        for i, path in enumerate(paths):
            results = dict(img_path=path, text='a person walking',
                           gt_label=i % 50, pid=i % 50, image_id=i)
            for name, step in zip(STEPS, steps):
                t0 = time.perf_counter()
                results = step(results)
                totals[name] += time.perf_counter() - t0
            assert results['inputs'].shape == (3, 384, 128)
        if best is None:
            best = dict.fromkeys(STEPS, float('inf'))
            continue
        if sum(totals.values()) < sum(best.values()):
            best = totals
    return best


def time_mmcv_loader(paths: List[str]) -> float:
    """Seconds for mmcv's LoadImageFromFile over all images (comparison)."""
    load = TRANSFORMS.build(dict(type='LoadImageFromFile'))
    t0 = time.perf_counter()
    for path in paths:
        load(dict(img_path=path))
    return time.perf_counter() - t0


def bench_annotation(folder: str) -> None:
    """Dataset construction and a sampler epoch at CUHK-PEDES size."""
    root = osp.join(folder, 'CUHK-PEDES')
    rng = np.random.default_rng(0)
    num_ids, records = 13003, []
    counts = np.full(num_ids, 3)
    counts[:40206 - 3 * num_ids] += 1  # 40,206 images in all
    splits = ['train'] * 11003 + ['val'] * 1000 + ['test'] * 1000
    for pid in range(num_ids):
        for j in range(counts[pid]):
            rel = f'CUHK{pid % 4}/{pid:05d}_{j}.png'
            records.append(dict(
                split=splits[pid], id=pid + 1, file_path=rel,
                captions=['a man wearing a red shirt and blue pants '
                          f'{k} {rng.integers(1e6)}' for k in range(2)],
                processed_tokens=[['a', 'man'], ['a', 'man']]))
    for d in range(4):
        os.makedirs(osp.join(root, 'imgs', f'CUHK{d}'), exist_ok=True)
    for r in records:
        open(osp.join(root, 'imgs', r['file_path']), 'wb').close()
    with open(osp.join(root, 'reid_raw.json'), 'w') as f:
        json.dump(records, f)
    size_mb = osp.getsize(osp.join(root, 'reid_raw.json')) / 2**20
    print(f'\nannotation: {len(records)} images, '
          f'{2 * len(records)} captions, {size_mb:.1f} MiB JSON')
    for split in ('train', 'test'):
        t0 = time.perf_counter()
        ds = DATASETS.build(dict(type='CUHKPEDES', data_root=root,
                                 split=split))
        dt = time.perf_counter() - t0
        print(f'  CUHKPEDES(split={split!r}) built in {dt:.2f} s: '
              f'{len(ds)} entries (JSON parse + validation + one '
              f'os.path.exists per image + serialisation)')
    t0 = time.perf_counter()
    nocheck = DATASETS.build(dict(type='CUHKPEDES', data_root=root,
                                  check_files=False))
    print(f'  same, check_files=False: {time.perf_counter() - t0:.2f} s '
          f'({len(nocheck)} entries)')
    t0 = time.perf_counter()
    sampler = DATA_SAMPLERS.build(dict(
        type='IdentityBalancedSampler', dataset=nocheck, batch_size=64,
        num_instances=4, seed=0))
    t1 = time.perf_counter()
    n = sum(1 for _ in sampler)
    t2 = time.perf_counter()
    print(f'  IdentityBalancedSampler(batch 64, K=4): labels read in '
          f'{t1 - t0:.2f} s, one epoch plan + iteration in {t2 - t1:.2f} s '
          f'({n} indices, {n // 64} batches)')


def main() -> None:
    args = parse_args()
    if args.cv2_threads is not None:
        cv2.setNumThreads(args.cv2_threads)
    print(f'python {platform.python_version()}, torch {torch.__version__}, '
          f'opencv {cv2.__version__} (cv2 threads {cv2.getNumThreads()}), '
          f'{os.cpu_count()} CPUs')
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(folder, args.num_images, args.seed)
        sizes = [cv2.imread(p).shape[:2] for p in paths]
        hs, ws = zip(*sizes)
        kb = np.mean([osp.getsize(p) for p in paths]) / 1024
        print(f'{len(paths)} JPEGs: width {min(ws)}-{max(ws)} (mean '
              f'{np.mean(ws):.0f}), height {min(hs)}-{max(hs)} (mean '
              f'{np.mean(hs):.0f}), {kb:.1f} KiB each on average')
        best = time_pipeline(paths, args.repeats)
        total = sum(best.values())
        print(f'\ntraining pipeline, one process, best of {args.repeats} '
              f'passes:')
        print(f'  {len(paths) / total:.0f} images/s per worker '
              f'({1e3 * total / len(paths):.3f} ms per image)')
        for name in STEPS:
            print(f'  {name:<7} {100 * best[name] / total:5.1f} %  '
                  f'{1e3 * best[name] / len(paths):.3f} ms/image')
        print('  (decode = LoadPersonImage: file read + JPEG decode; pack = '
              'HWC->CHW tensor + data sample)')
        mmcv_s = time_mmcv_loader(paths)
        print(f"  mmcv LoadImageFromFile for comparison: "
              f'{1e3 * mmcv_s / len(paths):.3f} ms/image')
        if args.annotation:
            bench_annotation(folder)


if __name__ == '__main__':
    main()

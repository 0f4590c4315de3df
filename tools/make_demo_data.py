#!/usr/bin/env python
"""Generate a synthetic text-based person search dataset (CUHK-PEDES layout)
with :mod:`mdrl_plugin.datasets.synthetic`; see docs/demo_data.md."""
import argparse
import importlib.util
import os.path as osp
import sys
from typing import List, Optional, Sequence


def _synthetic():
    """``mdrl_plugin.datasets.synthetic``, which needs only NumPy and OpenCV:
    loaded without ``mdrl_plugin/__init__`` (torch, MMEngine, timm: ~10 s)."""
    found = importlib.util.find_spec('mdrl_plugin')  # else: this checkout's
    root = found.submodule_search_locations[0] if found else osp.join(
        osp.dirname(osp.dirname(osp.abspath(__file__))), 'mdrl_plugin')
    folder = osp.join(root, 'datasets', 'synthetic')
    spec = importlib.util.spec_from_file_location(
        '_mdrl_synthetic', osp.join(folder, '__init__.py'),
        submodule_search_locations=[folder])
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_splits(text: str) -> List[int]:
    """``'200,50,50'`` -> ``[200, 50, 50]``, or ValueError."""
    try:
        splits = [int(p) for p in text.split(',')]
    except ValueError:
        splits = []
    if len(splits) != 3 or min(splits) < 0:
        raise ValueError('--splits must be three non-negative integers '
                         f'TRAIN,VAL,TEST, got {text!r}')
    return splits


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse ``argv`` (default ``sys.argv[1:]``), generate, print and return
    the summary of :func:`mdrl_plugin.datasets.synthetic.generate`."""
    parser = argparse.ArgumentParser(
        prog='make_demo_data.py', description='Write a synthetic person '
        'search dataset in the CUHK-PEDES layout (imgs/ + reid_raw.json).')
    parser.add_argument('out', help='output folder (the CUHK-PEDES root)')
    parser.add_argument('--num-ids', type=int, default=300,
                        help='number of identities (default 300)')
    parser.add_argument('--images-per-id', type=int, default=4,
                        help='images per identity (default 4)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--splits', help='TRAIN,VAL,TEST identity counts '
                        'summing to --num-ids (default 2/3, 1/6, 1/6)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace imgs/ and reid_raw.json of a non-empty '
                        'OUT')
    parser.add_argument('--contact-sheet', metavar='PATH',
                        help='also save a JPEG grid of 8 identities x 2 '
                        'images')
    args = parser.parse_args(argv)
    synthetic = _synthetic()
    try:
        splits = parse_splits(args.splits) if args.splits else None
        result = synthetic.generate(args.out, args.num_ids,
                                    args.images_per_id, args.seed, splits,
                                    args.overwrite)
    except ValueError as e:
        print(f'make_demo_data.py: error: {e}', file=sys.stderr)
        raise SystemExit(2)
    print(f"Wrote a synthetic CUHK-PEDES-style dataset to {result['out']} "
          f"in {result['seconds']:.1f} s")
    print(f"{'split':<6} {'ids':>5} {'images':>7} {'captions':>9}")
    for split, s in result['splits'].items():
        print(f"{split:<6} {s['ids']:>5} {s['images']:>7} {s['captions']:>9}")
    print(f"annotations: {result['json']}")
    print(f"images:      {osp.join(result['out'], 'imgs')}")
    if args.contact_sheet:
        print('contact sheet: '
              f'{synthetic.make_contact_sheet(args.out, args.contact_sheet)}')
    return result


if __name__ == '__main__':
    main()

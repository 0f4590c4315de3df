#!/usr/bin/env python
"""Report the health of a PEDES-style dataset copy (``--help``; the report:
:mod:`mdrl_plugin.datasets.checker`). Exit status 0 when the plugin's
dataset classes can use it, 1 when not (the last line says why), 2 on bad
command-line arguments."""
import argparse
import sys
from typing import Optional, Sequence

from mdrl_plugin.datasets.checker import DATASET_TYPES, check_dataset


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line (default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(
        description='Report the health of a PEDES-style dataset copy.')
    parser.add_argument('dataset', choices=DATASET_TYPES,
                        help='dataset type (as registered)')
    parser.add_argument('data_root',
                        help='the dataset folder holding imgs/ and the JSON')
    parser.add_argument('--ann-file', default=None,
                        help='annotation file name (default: the names the '
                        'dataset class tries)')
    parser.add_argument('--img-dir', default='imgs',
                        help='image folder relative to DATA_ROOT (default: '
                        'imgs)')
    parser.add_argument('--check-images', action='store_true',
                        help='decode every image to find unreadable ones')
    parser.add_argument('--show', type=int, default=5,
                        help='how many problem examples to list (default 5)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Check the dataset; return the exit status."""
    args = parse_args(argv)
    if args.show < 1:
        print('error: --show must be at least 1', file=sys.stderr)
        return 2
    return check_dataset(args.dataset, args.data_root, args.ann_file,
                         args.img_dir, args.check_images, args.show)


if __name__ == '__main__':
    sys.exit(main())

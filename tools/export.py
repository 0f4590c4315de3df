#!/usr/bin/env python
"""Export a checkpoint's retrieval paths to ONNX for torch-free search.

Usage::

    python tools/export.py CONFIG CHECKPOINT --out DIR [--opset 18] \\
        [--overwrite] [--check-split test] [--cfg-options KEY=VALUE ...]

Writes ``DIR/image_encoder.onnx``, ``DIR/text_encoder.onnx``,
``DIR/tokenizer/`` and ``DIR/mdrl_export.json`` (see docs/deploy.md). The
graphs are checked against PyTorch before they are kept. ``--check-split``
then ranks that dataset split with both and prints the parity as JSON
(top-k lists identical, R1/mAP of each).
"""
import argparse
import json
import sys
from typing import Optional, Sequence

__all__ = ['parse_args', 'main']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Export MDRL retrieval paths to ONNX.')
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='model checkpoint file')
    parser.add_argument('--out', required=True, help='export folder')
    parser.add_argument('--opset', type=int, default=18,
                        help='ONNX opset (default 18)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted |ONNX - PyTorch| feature '
                        'difference of the self-check (default 1e-4)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the files of an existing export')
    parser.add_argument('--check-split', choices=['test', 'val'],
                        help='also compare rankings on this dataset split')
    parser.add_argument('--topk', type=int, default=10,
                        help='length of the compared lists (default 10)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the export; returns the exit status (2 on an input error)."""
    args = parse_args(argv)
    from mmengine.config import Config

    from mdrl_plugin.deploy import ExportError, export_onnx, split_parity
    try:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        manifest = export_onnx(cfg, args.checkpoint, args.out,
                               opset=args.opset, atol=args.atol,
                               overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError,
            ExportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'Exported to {args.out}: {manifest["feature"]["layout"]} '
          f'features of width {manifest["feature"]["dim"]}, opset '
          f'{manifest["opset"]}, max |ONNX - PyTorch| on probes '
          f'{manifest["check"]["max_abs_diff"]}', file=sys.stderr)
    if args.check_split:
        report = split_parity(cfg, args.checkpoint, args.out,
                              split=args.check_split, topk=args.topk)
        print(json.dumps(report, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())

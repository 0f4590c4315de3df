#!/usr/bin/env python
"""Export a checkpoint's retrieval paths to ONNX for torch-free search.

``python tools/export.py CONFIG CHECKPOINT --out DIR [--check-split test]``
writes the graphs, tokenizer and manifest (docs/deploy.md), checked against
PyTorch; ``--check-split`` prints the parity of rankings on a split as JSON.
"""
import argparse
import json
import sys
from typing import Optional, Sequence

__all__ = ['parse_args', 'main']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description='Export MDRL retrieval to ONNX.')
    p.add_argument('config', help='model config file')
    p.add_argument('checkpoint', help='model checkpoint file')
    p.add_argument('--out', required=True, help='export folder')
    p.add_argument('--opset', type=int, default=18, help='ONNX opset')
    p.add_argument('--atol', type=float, default=1e-4, help='largest '
                   'accepted |ONNX - PyTorch| feature difference on probes')
    p.add_argument('--overwrite', action='store_true',
                   help='replace the files of an existing export')
    p.add_argument('--check-split', choices=['test', 'val'],
                   help='also compare rankings on this dataset split')
    p.add_argument('--topk', type=int, default=10, help='compared list length')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the export; returns the exit status (2 on an input error)."""
    args = parse_args(argv)
    from mmengine.config import Config

    from mdrl_plugin.export import ExportError, export_onnx, split_parity
    try:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options or {})
        manifest = export_onnx(cfg, args.checkpoint, args.out,
                               opset=args.opset, atol=args.atol,
                               overwrite=args.overwrite)
        print(f'Exported to {args.out}: {manifest["feature"]["layout"]} '
              f'features of width {manifest["feature"]["dim"]}, opset '
              f'{manifest["opset"]}, max |ONNX - PyTorch| on probes '
              f'{manifest["check"]["max_abs_diff"]}', file=sys.stderr)
        if args.check_split:  # the split's data and images are read here
            print(json.dumps(split_parity(
                cfg, args.checkpoint, args.out, split=args.check_split,
                topk=args.topk), indent=2))
    except (OSError, ValueError, KeyError, ExportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Evaluate a checkpoint with the config's test dataloader and evaluator.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.json]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
        [--allow-unsafe-checkpoint]

Distributed: ``tools/dist_test.sh CONFIG CHECKPOINT N [args]``.
"""
import argparse
import json
import numbers
import os
import os.path as osp
import sys
from typing import Any

import mdrl_plugin  # noqa: F401  (registries, safe checkpoint loading)
from mdrl_plugin.engine import (CheckpointLoadError, add_common_args,
                                adapt_cfg_for_device, apply_common_args,
                                load_config, prepare_determinism,
                                set_allow_unsafe_checkpoints,
                                setup_distributed, teardown_distributed)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser, 'logs and the evaluation')
    parser.add_argument(
        '--out', help='write the metrics to this JSON file (rank 0 only)')
    return parser.parse_args(argv)


def merge_args(cfg, args):
    """Apply the command line to the config.

    Args:
        cfg: The config.
        args: Parsed arguments.

    Returns:
        The updated config.
    """
    apply_common_args(cfg, args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    adapt_cfg_for_device(cfg, args.launcher)
    prepare_determinism(cfg)
    return cfg


def _to_json(value: Any) -> Any:
    """Make metric values (numpy scalars/arrays, tensors) JSON friendly."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if hasattr(value, 'tolist'):  # numpy arrays/scalars, torch tensors
        return _to_json(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def main(argv=None) -> int:
    """Run the evaluation.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
    except (FileNotFoundError, ValueError) as e:
        print(f'tools/test.py: error: {e}', file=sys.stderr)
        return 2
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        print(f"tools/test.py: error: checkpoint file '{args.checkpoint}' "
              'does not exist.', file=sys.stderr)
        return 2
    if args.out is not None and not args.out.endswith('.json'):
        print(f"tools/test.py: error: --out '{args.out}' must be a .json "
              'file.', file=sys.stderr)
        return 2
    if args.allow_unsafe_checkpoint:
        set_allow_unsafe_checkpoints(True)
    cfg = merge_args(cfg, args)
    setup_distributed(args.launcher)

    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    try:
        metrics = runner.test()
    except CheckpointLoadError as e:  # unsafe or unreadable checkpoint
        teardown_distributed(barrier=False)
        print(f'tools/test.py: error: {e}', file=sys.stderr)
        return 1
    except BaseException:
        teardown_distributed(barrier=False)
        raise
    teardown_distributed()
    if args.out is not None and is_main_process():
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(_to_json(metrics), f, indent=2, sort_keys=True)
        print(f'Metrics written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

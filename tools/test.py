"""Evaluate a checkpoint with the config's test dataloader and evaluator.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.json]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
        [--allow-unsafe-checkpoint] [--allow-partial-checkpoint] [--debug]

The config, the checkpoint (it must exist and be a PyTorch file), ``--out``,
the work dir and the test data root are checked before anything is built
(status 2). A checkpoint whose keys or shapes do not match the model is
refused (status 1) unless ``--allow-partial-checkpoint`` is given; then what
was left uninitialised is logged. Tracebacks of such errors only with
``--debug``.

Distributed: ``tools/dist_test.sh CONFIG CHECKPOINT N [args]``.
"""
import argparse
import json
import numbers
import os
import os.path as osp
import sys
from typing import Any

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

import mdrl_plugin  # noqa: E402,F401  (registries)
from _common import (USER_ERRORS, add_common_args,  # noqa: E402
                     apply_common_args, check_checkpoint, check_data_roots,
                     check_output_path, check_work_dir, report_user_error,
                     safe_checkpoint_loading)
from mdrl_plugin.engine import (adapt_cfg_for_device,  # noqa: E402
                                load_config, prepare_determinism,
                                setup_distributed, teardown_distributed)

PROG = 'tools/test.py'


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
    with safe_checkpoint_loading(args.allow_unsafe_checkpoint):
        return _run(args)


def _run(args) -> int:
    try:
        cfg = load_config(args.config)
        check_checkpoint(args.checkpoint)
        if args.out is not None:
            check_output_path(args.out, ('.json', ), '--out')
        cfg = merge_args(cfg, args)
        check_work_dir(cfg.work_dir)
        check_data_roots(cfg, ['test_dataloader'])
        mdrl_plugin.models.check_weights(cfg)  # pretrained weights, one message
    except (FileNotFoundError, ValueError, SyntaxError) + USER_ERRORS as e:
        if args.debug:
            raise
        print(f'{PROG}: error: {e}', file=sys.stderr)
        return 2
    setup_distributed(args.launcher)

    from mmengine.dist import is_main_process
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        metrics = runner.test()
    except USER_ERRORS as e:  # unsafe, unreadable or unfitting checkpoint
        teardown_distributed(barrier=False)
        report_user_error(PROG, e, args.debug)
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

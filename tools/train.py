"""Train a model from an MMEngine config.

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
        [--allow-unsafe-checkpoint]

Distributed: ``tools/dist_train.sh CONFIG N [args]`` (torchrun) or
``tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR [args]``.
"""
import argparse
import os.path as osp
import sys

import mdrl_plugin  # noqa: F401  (registries, safe checkpoint loading)
from mdrl_plugin.engine import (CheckpointLoadError, add_common_args,
                                adapt_cfg_for_device, apply_common_args,
                                apply_resume, enable_amp, load_config,
                                prepare_determinism,
                                set_allow_unsafe_checkpoints,
                                setup_distributed, teardown_distributed)


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments.
    """
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    add_common_args(parser, 'logs and checkpoints')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a path, from the '
        'newest complete checkpoint of the work dir')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision training (fp16 + loss scaling on CUDA, bf16 '
        'on CPU)')
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
    if args.amp:
        enable_amp(cfg)
    apply_resume(cfg, args.resume)
    adapt_cfg_for_device(cfg, args.launcher)
    prepare_determinism(cfg)
    return cfg


def main(argv=None) -> int:
    """Run training.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
    except (FileNotFoundError, ValueError) as e:
        print(f'tools/train.py: error: {e}', file=sys.stderr)
        return 2
    if args.allow_unsafe_checkpoint:
        set_allow_unsafe_checkpoints(True)
    try:
        cfg = merge_args(cfg, args)
    except (FileNotFoundError, ValueError) as e:
        print(f'tools/train.py: error: {e}', file=sys.stderr)
        return 2
    setup_distributed(args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' not in cfg:
        runner = Runner.from_cfg(cfg)
    else:
        runner = RUNNERS.build(cfg)
    try:
        runner.train()
    except CheckpointLoadError as e:  # unsafe or unreadable checkpoint
        teardown_distributed(barrier=False)
        print(f'tools/train.py: error: {e}', file=sys.stderr)
        return 1
    except BaseException:
        teardown_distributed(barrier=False)
        raise
    teardown_distributed()
    if runner.rank == 0:
        print(f'Work dir: {osp.abspath(cfg.work_dir)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

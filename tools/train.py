"""Train a model from an MMEngine config.

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]
        [--allow-unsafe-checkpoint] [--allow-partial-checkpoint] [--debug]

The config, the work dir, ``load_from`` / ``--resume`` checkpoints and the
data roots are checked before anything is built; such mistakes print one
paragraph and exit with status 2 (errors found while running, such as a
checkpoint that does not fit the model: status 1), with a traceback only
under ``--debug``.

Distributed: ``tools/dist_train.sh CONFIG N [args]`` (torchrun) or
``tools/slurm_train.sh PARTITION JOB CONFIG WORK_DIR [args]``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

import mdrl_plugin  # noqa: E402,F401  (registries)
from _common import (USER_ERRORS, add_common_args,  # noqa: E402
                     apply_common_args, check_checkpoint, check_data_roots,
                     check_work_dir, report_user_error,
                     safe_checkpoint_loading)
from mdrl_plugin.engine import (adapt_cfg_for_device,  # noqa: E402
                                apply_resume, enable_amp, load_config,
                                prepare_determinism, setup_distributed,
                                teardown_distributed)

PROG = 'tools/train.py'


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


def check_inputs(cfg) -> None:
    """Check the paths a training run needs, before anything is built.

    Args:
        cfg: The merged config.

    Raises:
        InputError: A path is unusable.
    """
    check_work_dir(cfg.work_dir)
    load_from = cfg.get('load_from', None)
    if load_from:
        what = 'resume checkpoint' if cfg.get('resume', False) else \
            'load_from checkpoint'
        check_checkpoint(load_from, what)
    loaders = ['train_dataloader']
    if cfg.get('val_cfg', None) and cfg.get('val_dataloader', None):
        loaders.append('val_dataloader')
    check_data_roots(cfg, loaders)
    mdrl_plugin.models.check_weights(cfg)  # pretrained weights, one message


def main(argv=None) -> int:
    """Run training.

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
        cfg = merge_args(cfg, args)
        check_inputs(cfg)
    except (FileNotFoundError, ValueError, SyntaxError) + USER_ERRORS as e:
        if args.debug:
            raise
        print(f'{PROG}: error: {e}', file=sys.stderr)
        return 2
    setup_distributed(args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        if 'runner_type' not in cfg:
            runner = Runner.from_cfg(cfg)
        else:
            runner = RUNNERS.build(cfg)
        runner.train()
    except USER_ERRORS as e:  # a checkpoint or dataset that does not fit
        teardown_distributed(barrier=False)
        report_user_error(PROG, e, args.debug)
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

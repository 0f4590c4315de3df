"""Train a model from an MMEngine config: ``python tools/train.py CONFIG
[--resume [CKPT]] [--amp] ...`` (``--help``). Inputs are checked before
anything is built (status 2); user errors while running give status 1, a
traceback only with ``--debug``. Distributed: ``tools/dist_train.sh`` and
``tools/slurm_train.sh``."""
import argparse
import glob
import logging
import os
import os.path as osp
import re
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

from mmengine.logging import print_log  # noqa: E402

import mdrl_plugin  # noqa: E402,F401  (registries)
from mdrl_plugin.engine.checkpoint import is_complete_checkpoint  # noqa

from _common import (  # noqa: E402
    InputError,
    add_common_args,
    check_checkpoint,
    check_data_roots,
    check_work_dir,
    run_tool,
)

PROG = 'tools/train.py'


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line (default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    add_common_args(parser, 'logs and checkpoints')
    parser.add_argument(
        '--resume', nargs='?', const='auto',
        help='resume from the given checkpoint; without a path, from the '
        "work dir's last checkpoint (if there is none, start afresh)")
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision training (fp16 + loss scaling on CUDA, bf16 '
        'on CPU)')
    return parser.parse_args(argv)


def enable_amp(cfg) -> None:
    """Switch ``OptimWrapper``/``AmpOptimWrapper`` to
    ``MixedPrecisionOptimWrapper`` (AMP on CUDA and CPU)."""
    wrapper = cfg.get('optim_wrapper', None)
    if wrapper is None:
        raise InputError('--amp needs an `optim_wrapper` in the config.')
    kind = wrapper.get('type', 'OptimWrapper').replace('mmengine.', '')
    if kind.endswith('MixedPrecisionOptimWrapper'):
        print_log('Mixed precision is already enabled in the config.',
                  logger='current', level=logging.WARNING)
    elif kind not in ('OptimWrapper', 'AmpOptimWrapper'):
        raise InputError(
            '--amp switches `optim_wrapper.type` from OptimWrapper or '
            'AmpOptimWrapper to MixedPrecisionOptimWrapper, but the config '
            f'uses {kind!r}.')
    elif wrapper.pop('use_fsdp', False):
        raise InputError('--amp: MixedPrecisionOptimWrapper does not '
                         'support use_fsdp=True.')
    else:
        wrapper.type = 'mdrl_plugin.MixedPrecisionOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')


def last_checkpoint(work_dir: str):
    """MMEngine's ``last_checkpoint``, or the newest complete ``epoch_N`` /
    ``iter_N.pth`` when a kill cut that pointer short (MMEngine 0.10.7 does
    not write it atomically); ``None`` if there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = open(pointer).read().strip() if osp.isfile(pointer) else ''
    if named and is_complete_checkpoint(named):
        return named
    found = sorted((os.stat(p).st_mtime_ns, int(m[2]), p) for p, m in (
        (p, re.fullmatch(r'(epoch|iter)_(\d+)\.pth', osp.basename(p)))
        for p in glob.glob(osp.join(glob.escape(work_dir), '*.pth'))) if m)
    return next((p for *_, p in found[::-1] if is_complete_checkpoint(p)),
                None)


def prepare(cfg, args) -> None:
    """Apply ``--amp`` and ``--resume``; check the paths a run needs."""
    if args.amp:
        enable_amp(cfg)
    resume = last_checkpoint(cfg.work_dir) if args.resume == 'auto' else \
        args.resume
    if resume:
        cfg.resume, cfg.load_from = True, resume
    elif args.resume:
        print_log(f"--resume: no checkpoint in '{cfg.work_dir}', training "
                  'from the start.', logger='current', level=logging.WARNING)
    check_work_dir(cfg.work_dir)
    if cfg.get('load_from', None):
        check_checkpoint(cfg.load_from, 'resume checkpoint' if cfg.get(
            'resume', False) else 'load_from checkpoint')
    check_data_roots(cfg, ['train_dataloader'] + ['val_dataloader'] * bool(
        cfg.get('val_cfg', None) and cfg.get('val_dataloader', None)))
    mdrl_plugin.models.check_weights(cfg)  # pretrained weights, one message


def main(argv=None) -> int:
    """Run training; return the exit status."""
    args = parse_args(argv)
    run = run_tool(PROG, args, lambda cfg: prepare(cfg, args), 'train')
    if run.status == 0 and run.rank == 0:
        print(f'Work dir: {osp.abspath(run.work_dir)}')
    return run.status


if __name__ == '__main__':
    sys.exit(main())

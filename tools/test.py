"""Evaluate a checkpoint with the config's test dataloader and evaluator:
``python tools/test.py CONFIG CHECKPOINT [--out FILE.json] ...``
(``--help``). Inputs are checked before anything is built (status 2); a
checkpoint that does not fit the model is refused (status 1) unless
``--allow-partial-checkpoint``. Distributed: ``tools/dist_test.sh``."""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

import mdrl_plugin  # noqa: E402,F401  (registries)

from _common import (  # noqa: E402
    add_common_args,
    check_checkpoint,
    check_data_roots,
    check_output_path,
    check_work_dir,
    run_tool,
)

PROG = 'tools/test.py'


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line (default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser, 'logs and the evaluation')
    parser.add_argument(
        '--out', help='write the metrics to this JSON file (rank 0 only)')
    return parser.parse_args(argv)


def prepare(cfg, args) -> None:
    """Load ``args.checkpoint``; check the paths the evaluation needs."""
    check_checkpoint(args.checkpoint)
    if args.out is not None:
        check_output_path(args.out, ('.json', ), '--out')
    cfg.load_from, cfg.resume = args.checkpoint, False
    check_work_dir(cfg.work_dir)
    check_data_roots(cfg, ['test_dataloader'])
    mdrl_plugin.models.check_weights(cfg)  # pretrained weights, one message


def main(argv=None) -> int:
    """Run the evaluation; return the exit status."""
    args = parse_args(argv)
    run = run_tool(PROG, args, lambda cfg: prepare(cfg, args), 'test')
    metrics = run.result
    if run.status == 0 and args.out is not None and run.rank == 0:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:  # numpy scalars, tensors: tolist()
            json.dump(metrics, f, indent=2, sort_keys=True, default=lambda v:
                      v.tolist() if hasattr(v, 'tolist') else str(v))
        print(f'Metrics written to {args.out}')
    return run.status


if __name__ == '__main__':
    sys.exit(main())

"""Train configs x seeds, test the checkpoint chosen on val, tabulate.

Each (config, seed) is trained by ``tools/train.py`` and its checkpoint of the
best val epoch (from MMEngine's ``vis_data/scalars.json``) is tested by
``tools/test.py``, both subprocesses. Each finished run's record is written
atomically to ``<out>/records/``; a rerun skips recorded runs and resumes
unfinished trainings. Usage and output: docs/compare.md.
"""
import argparse
import copy
import glob
import hashlib
import json
import math
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

from mdrl_deploy.utils import atomic_write_bytes

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROG = 'tools/analysis_tools/compare.py'
EPOCH_LOOPS = ('EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop')


class CompareError(Exception):
    """A problem with the command line, a config or a run's files."""


def parse_options(pairs: Sequence[str]) -> dict:
    """Parse ``key=value`` strings as ``--cfg-options`` does."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--o', nargs='*', action=DictAction, default={})
    return parser.parse_args(['--o', *pairs]).o


def check_config(cfg: Config, path: str) -> dict:
    """``dict(metric, rule, epochs)`` of a merged config, or CompareError:
    not an epoch-based loop, no single ``save_best`` metric, or checkpoints
    or val scores named by iteration."""
    loop, hooks = cfg.get('train_cfg') or {}, cfg.get('default_hooks') or {}
    ckpt, logger = hooks.get('checkpoint') or {}, hooks.get('logger') or {}
    metric = ckpt.get('save_best')
    if loop.get('type', EPOCH_LOOPS[0]) not in EPOCH_LOOPS or \
            'max_epochs' not in loop:
        raise CompareError(
            f"{path}: train_cfg is {loop.get('type')!r} without max_epochs; "
            'the tool tests the checkpoint saved at the best val epoch, so it '
            'needs an EpochBasedTrainLoop (an iteration-based loop logs its '
            'val scores at step 0 by default; it is refused, not misread).')
    if not isinstance(metric, str) or metric == 'auto':
        raise CompareError(
            f'{path}: default_hooks.checkpoint.save_best must name one val '
            f"metric (e.g. save_best='R1', rule='greater'), got {metric!r}.")
    if not (ckpt.get('by_epoch', True)
            and logger.get('log_metric_by_epoch', True)):
        raise CompareError(
            f'{path}: default_hooks.checkpoint.by_epoch and default_hooks.'
            'logger.log_metric_by_epoch must be True.')
    begin, end = loop.get('val_begin', 1), loop['max_epochs']
    if not cfg.get('val_dataloader') or begin > end:
        raise CompareError(f'{path}: no epoch is validated (val_begin={begin}'
                           f', max_epochs={end}): no val score to choose by.')
    rule = ckpt.get('rule') or ('less' if 'loss' in metric else 'greater')
    return dict(metric=metric, rule=rule, epochs=int(loop['max_epochs']))


def epoch_options(cfg: Config, epochs: int, path: str) -> List[str]:
    """``--cfg-options`` that train ``cfg`` (file ``path``) ``epochs`` epochs.

    A scheduler that ends at the old ``max_epochs`` ends at ``epochs``; its
    ``T_max``, when it spans ``end - begin``, spans the new length.

    Raises:
        CompareError: An iteration-based scheduler (it cannot be moved).
    """
    old = (cfg.get('train_cfg') or {}).get('max_epochs')
    opts = [f'train_cfg.max_epochs={epochs}']
    for i, s in enumerate(cfg.get('param_scheduler') or []):
        key = f'param_scheduler.{i}'
        if not s.get('by_epoch', True):
            raise CompareError(
                f'{path}: --epochs: {key} is iteration-based (by_epoch=False)'
                '; write a config with the schedule for the new length.')
        if s.get('end') == old:
            opts.append(f'{key}.end={epochs}')
            if s.get('T_max') == old - s.get('begin', 0):
                opts.append(f"{key}.T_max={epochs - s.get('begin', 0)}")
    return opts


def val_rows(work_dir: str) -> Dict[int, dict]:
    """``{epoch: {metric: value}}`` of the val rows of every
    ``<work_dir>/*/vis_data/scalars.json`` (one per attempt of a resumed
    run; later values win)."""
    rows: Dict[int, dict] = {}
    for stamp in sorted(os.listdir(work_dir)) if osp.isdir(work_dir) else []:
        path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
        for line in open(path) if osp.isfile(path) else []:
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a kill
                continue
            # training rows carry 'iter' (and a loss metric's name, too)
            if 'step' in row and 'iter' not in row:
                rows.setdefault(int(row.pop('step')), {}).update(row)
    return rows


def read_json(path: str):
    """A JSON file's content, or None when missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON atomically (never a partial file)."""
    atomic_write_bytes(json.dumps(obj, indent=2).encode(), path)


def call(tool: str, argv: List[str], logfile: str) -> int:
    """Run ``tools/<tool>.py`` in a subprocess (stopped if we are stopped)."""
    cmd = [sys.executable, osp.join(TOOLS, f'{tool}.py'), *argv]
    with open(logfile, 'a') as log:
        log.write('\n$ ' + shlex.join(cmd) + '\n')
        log.flush()  # subprocess.run kills the child if we are stopped
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT
                              ).returncode


class Run:
    """One (config, seed): its folder under the work dir and its record.

    Args:
        config: The config file.
        seed: The seed.
        options: ``--cfg-options`` of both tools (the seed's last).
        cfg: The merged config.
        work_dir: The sweep's work dir.
        out: The report folder (records go to ``<out>/records``).
    """

    def __init__(self, config: str, seed: int, options: List[str],
                 cfg: Config, work_dir: str, out: str) -> None:
        self.config, self.seed, self.options = config, seed, options
        self.info = check_config(cfg, config)
        self.variant = osp.splitext(osp.basename(config))[0]
        self.name = f'{self.variant}/seed_{seed}'
        self.dir = osp.join(work_dir, self.variant, f'seed_{seed}')
        self.train_dir = osp.join(self.dir, 'train')
        self.record_file = osp.join(out, 'records',
                                    f'{self.variant}_seed{seed}.json')
        text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        self.spec = dict(config=osp.normpath(config), cfg_options=options,
                         config_sha1=hashlib.sha1(text.encode()).hexdigest())

    def record(self) -> Optional[dict]:
        """The finished run's record, or None; refuse other settings."""
        rec = read_json(self.record_file)
        old = rec['spec'] if rec else read_json(f'{self.dir}/spec.json')
        if old not in (None, self.spec):
            diff = [k for k in self.spec if old.get(k) != self.spec[k]]
            raise CompareError(
                f'{self.record_file if rec else self.dir} was made with other '
                f'settings ({", ".join(diff)} differ); use another '
                '--work-dir/--out or delete it.')
        return rec

    def train(self, log) -> None:
        """Train, or resume an interrupted training; nothing when done."""
        times_file = osp.join(self.dir, 'train_time.json')
        times = read_json(times_file) or []
        if times and times[-1].get('rc') == 0:
            return
        write_json(osp.join(self.dir, 'spec.json'), self.spec)
        argv = [self.config, '--work-dir', self.train_dir]
        if times:  # resume from the newest checkpoint, the time up to it
            ckpts = glob.glob(osp.join(glob.escape(self.train_dir),
                                       'epoch_*.pth'))
            newest = max([t['start'] for t in times] +
                         [osp.getmtime(p) for p in ckpts])
            for t in times:
                t['end'] = t['end'] or max(t['start'], newest)
            argv.append('--resume')
        log(f'[{self.name}] {"resuming" if times else "training"}')
        times.append(dict(start=time.time(), end=None))
        write_json(times_file, times)
        logfile = osp.join(self.dir, 'train.log')
        rc = call('train', argv + ['--cfg-options', *self.options], logfile)
        times[-1].update(end=time.time(), rc=rc)
        write_json(times_file, times)
        if rc != 0:
            raise CompareError(f'[{self.name}] training failed (exit status '
                               f'{rc}); see {logfile}')

    def pick(self, log) -> Tuple[Dict[int, dict], int, str]:
        """The val rows, the best epoch and the checkpoint saved at it.

        Ties go to the earliest epoch, as ``save_best`` keeps the first. An
        epoch whose checkpoint was never saved (a kill between its
        validation and its save) cannot be tested; it is skipped, with a
        message.
        """
        rows = val_rows(self.train_dir)
        scores = {e: float(r[self.info['metric']]) for e, r in rows.items()
                  if self.info['metric'] in r}
        tag, files = self.info['metric'].replace('/', '_'), {}
        for e in scores:
            for name in (f'epoch_{e}.pth', f'best_{tag}_epoch_{e}.pth'):
                if osp.isfile(osp.join(self.train_dir, name)):
                    files[e] = osp.join(self.train_dir, name)
        sign = 1.0 if self.info['rule'] == 'greater' else -1.0
        best, epoch = (max(sorted(c), key=lambda e: (sign * scores[e], -e),
                           default=None) for c in (scores, files))
        if epoch is None:
            raise CompareError(
                f"[{self.name}] no checkpoint of an epoch with a val "
                f"{self.info['metric']!r} (validated: {sorted(scores)}) in "
                f'{self.train_dir}')
        if best != epoch:
            log(f'[{self.name}] epoch {best} has the best val score but no '
                f'checkpoint (interrupted before its save); testing {epoch}')
        return {e: rows[e] for e in scores}, epoch, files[epoch]

    def run(self, log) -> dict:
        """Train, pick, test, prune checkpoints and write the record."""
        self.train(log)
        rows, epoch, ckpt = self.pick(log)
        name = osp.basename(ckpt)
        out = osp.join(self.dir, f'test_{name[:-4]}.json')
        metrics = read_json(out)  # None also when cut by a kill: test again
        if metrics is None:
            log(f'[{self.name}] testing {name}')
            logfile = osp.join(self.dir, 'test.log')
            rc = call('test', [self.config, ckpt, '--work-dir',
                               osp.join(self.dir, 'test'), '--out', out,
                               '--cfg-options', *self.options], logfile)
            metrics = read_json(out)
            if rc != 0 or metrics is None:
                raise CompareError(f'[{self.name}] testing failed (exit '
                                   f'status {rc}); see {logfile}')
        for n in os.listdir(self.train_dir):  # only the tested one stays
            if n.endswith('.pth') and n != name:
                os.remove(osp.join(self.train_dir, n))
        times = read_json(osp.join(self.dir, 'train_time.json')) or []
        rec = dict(config=self.variant, seed=self.seed, spec=self.spec,
                   epochs=self.info['epochs'], metric=self.info['metric'],
                   val={str(e): r[self.info['metric']]
                        for e, r in sorted(rows.items())},
                   picked_epoch=epoch, val_metrics=rows[epoch],
                   checkpoint=name,
                   train_time_s=round(sum(t['end'] - t['start']
                                          for t in times), 1),
                   attempts=len(times),
                   test=metrics)
        write_json(self.record_file, rec)
        return rec


# ------------------------------------------------------------------ report
def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    n, mean = len(values), sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean)**2 for v in values) / max(n - 1, 1))


def fmt(values: Sequence[float], digits: int = 2, sign: str = '') -> str:
    """``'mean ± std'`` of ``values`` (no ± for one value)."""
    mean, std = mean_std(values)
    return f'{mean:{sign}.{digits}f}' + (f' ± {std:.{digits}f}'
                                        if len(values) > 1 else '')


def regime(epochs: Iterable[int]) -> str:
    """``'8 epochs'`` (several lengths: ``'8 / 24 epochs'``)."""
    return ' / '.join(str(e) for e in sorted(set(epochs))) + ' epochs'


def paired(records: Sequence[dict], a: str, b: str,
           metrics: Sequence[str]) -> Dict[int, Dict[str, float]]:
    """``{seed: {metric: A - B}}`` over the seeds both finished."""
    by = {(r['config'], r['seed']): r['test'] for r in records}
    return {s: {m: by[(a, s)][m] - by[(b, s)][m] for m in metrics}
            for (c, s) in sorted(by, key=lambda k: k[1])
            if c == a and (b, s) in by}


def markdown(records: List[dict], configs: List[str], metrics: List[str],
             pair: Optional[Sequence[str]], pending: List[str],
             title: str, split: str = 'test') -> str:
    """The report (``title``: the regime; ``split``: whose scores the
    records' ``test`` holds): a table over seeds, then the per-seed
    ``A - B``."""
    lines = [f'# {split.capitalize()} scores at the epoch chosen on val: '
             f'{title}', '',
             f'{len(records)} finished run(s).' +
             (f" Not finished: {', '.join(pending)}." if pending else ''), '',
             '| config | epochs | seeds | ' + ' | '.join(metrics)
             + ' | epoch chosen | train time (s) |',
             '| --- ' * (len(metrics) + 5) + '|']
    for c in configs:
        rs = [r for r in records if r['config'] == c]
        if rs:
            lines.append('| ' + ' | '.join(
                [c, regime(r['epochs'] for r in rs).split(' epochs')[0],
                 ','.join(str(r['seed']) for r in rs)] +
                [fmt([r['test'][m] for r in rs]) for m in metrics] +
                [fmt([r['picked_epoch'] for r in rs], 1),
                 fmt([r['train_time_s'] for r in rs], 0)]) + ' |')
    lines += ['', f'{split.capitalize()} split, each run at its best val '
              'epoch; mean ± sample std over seeds. Train time: wall seconds '
              'of training.', '']
    diffs = paired(records, *pair, metrics) if pair else {}
    if diffs:
        lines += [f'## {pair[0]} − {pair[1]}, per seed ({title})', '',
                  '| seed | ' + ' | '.join(metrics) + ' |',
                  '| --- ' * (len(metrics) + 1) + '|']
        lines += [f'| {s} | ' + ' | '.join(f'{d[m]:+.2f}' for m in metrics)
                  + ' |' for s, d in diffs.items()]
        ahead = sum(d[metrics[0]] > 0 for d in diffs.values())
        lines += ['| mean ± std | ' + ' | '.join(
            fmt([d[m] for d in diffs.values()], sign='+') for m in metrics)
            + ' |', '', f'{pair[0]} is ahead on {metrics[0]} in {ahead} of '
            f'{len(diffs)} seed(s).', '']
    return '\n'.join(lines)


def chart(records: List[dict], configs: List[str], metrics: List[str],
          title: str, path: str, split: str = 'test') -> None:
    """Bars of the mean per metric and config, the std as error bars."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    shown = [c for c in configs if any(r['config'] == c for r in records)]
    width = 0.8 / len(shown)
    for i, c in enumerate(shown):
        rs = [r for r in records if r['config'] == c]
        stats = [mean_std([r['test'][m] for r in rs]) for m in metrics]
        ax.bar([j + (i - (len(shown) - 1) / 2) * width
                for j in range(len(metrics))], [s[0] for s in stats], width,
               yerr=[s[1] for s in stats], capsize=3,
               label=f'{c} (n={len(rs)})')
    ax.set(xticks=range(len(metrics)), xticklabels=metrics, ylim=(0, 105),
           ylabel=f'{split} score (%)',
           title=f'{split.capitalize()}, epoch chosen on val, {title} '
           '(mean ± std over seeds)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# -------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description='Train configs x seeds, '
                                     'test the epoch chosen on val, tabulate.')
    parser.add_argument('configs', nargs='+', help='a variant per file')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, help='train N epochs')
    parser.add_argument('--work-dir', help='default work_dirs/compare_<N>e')
    parser.add_argument('--out', help='records, report (default: work dir)')
    parser.add_argument('--paired', nargs=2, metavar=('A', 'B'),
                        help='default: full baseline when both are swept')
    parser.add_argument('--metrics', nargs='+',
                        default=['R1', 'R5', 'R10', 'mAP', 'mINP'])
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        metavar='KEY=VALUE', help='options for every run')
    parser.add_argument('--report-only', action='store_true')
    parser.add_argument('--scores', choices=['test', 'val'], default='test',
                        help='report the test scores (default) or the val '
                        'scores of the picked epoch')
    args = parser.parse_args(argv)
    names = [osp.splitext(osp.basename(c))[0] for c in args.configs]
    if (args.epochs is not None and args.epochs < 1) or \
            len(set(args.seeds)) < len(args.seeds):
        parser.error('--epochs must be >= 1, --seeds distinct')
    if len(set(names)) < len(names) or not set(args.paired or []) <= set(
            names):
        parser.error(f'config names {names} must be distinct and include '
                     f'--paired {args.paired}')
    return args


def plan(args: argparse.Namespace) -> Tuple[List[Run], str]:
    """Load the configs; every run (seed by seed) and the report folder."""
    cfgs = []
    for path in args.configs:
        cfg = Config.fromfile(path, import_custom_modules=False)
        cfg.merge_from_dict(parse_options(args.cfg_options))
        opts = args.cfg_options + (epoch_options(cfg, args.epochs, path)
                                   if args.epochs else [])
        cfg.merge_from_dict(parse_options(opts))
        check_config(cfg, path)
        cfgs.append((path, cfg, opts))
    epochs = sorted({int(cfg.train_cfg.max_epochs) for _, cfg, _ in cfgs})
    work = args.work_dir or osp.join(
        'work_dirs', 'compare_' + '_'.join(f'{e}e' for e in epochs))
    runs = []
    for seed in args.seeds:
        for path, cfg, opts in cfgs:
            cfg = copy.deepcopy(cfg)
            cfg.merge_from_dict({'randomness.seed': seed})
            runs.append(Run(path, seed, opts + [f'randomness.seed={seed}'],
                            cfg, work, args.out or work))
    return runs, args.out or work


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run (or resume) the sweep and write the report.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        0 when every run finished, 1 when a run failed, 2 on bad input.
    """
    args = parse_args(argv)
    try:
        runs, out = plan(args)
        finished = [run.record() for run in runs]
    except (CompareError, OSError, SyntaxError, ValueError, KeyError,
            TypeError) as e:  # configs, options and records
        print(f'{PROG}: error: {e}', file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    records, pending, status = [], [], 0

    def log(msg: str) -> None:
        print(f'compare.py: {msg}', flush=True)

    for run, rec in zip(runs, finished):
        if rec is not None:
            log(f'[{run.name}] finished before, skipped')
        elif not args.report_only and status == 0:
            try:
                rec = run.run(log)
                log(f"[{run.name}] done: epoch {rec['picked_epoch']}")
            except CompareError as e:
                print(f'{PROG}: error: {e}', file=sys.stderr)
                status = 1
        (pending if rec is None else records).append(rec or run.name)
    if args.scores == 'val':  # the picked epoch's val scores, as 'test'
        old = [r['config'] for r in records if 'val_metrics' not in r]
        if old:
            print(f'{PROG}: error: --scores val: the records of {old} have '
                  'no val scores (made before they were kept); use '
                  'another --out to rerun them.', file=sys.stderr)
            return 2
        records = [dict(r, test=r['val_metrics']) for r in records]
    for m in (m for m in args.metrics for r in records if m not in r['test']):
        print(f"{PROG}: error: --metrics {m!r} is not in the test results "
              f"{sorted(records[0]['test'])}.", file=sys.stderr)
        return 2
    names = list(dict.fromkeys(run.variant for run in runs))
    title = regime(run.info['epochs'] for run in runs)
    pair = args.paired or (('full', 'baseline') if {'full', 'baseline'}
                           <= set(names) else None)
    os.makedirs(out, exist_ok=True)
    with open(osp.join(out, 'compare.md'), 'w') as f:
        f.write(markdown(records, names, args.metrics, pair, pending, title,
                         args.scores))
    if records:
        chart(records, names, args.metrics, title,
              osp.join(out, 'compare.png'), args.scores)
    log(f"report: {osp.join(out, 'compare.md')}")
    return status


if __name__ == '__main__':
    sys.exit(main())

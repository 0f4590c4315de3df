"""Compare model variants over several seeds: train, select on val, test.

Usage::

    python tools/compare.py CONFIG --variants baseline +dll +cim full
        [--seeds 3 | --seeds 0,4,7] [--short-epochs K] [--work-dir DIR]
        [--cfg-options key=value ...] [--keep-checkpoints] [--report-only]
        [--dry-run] [-- TRAIN_ARGS ...]

For every (variant, seed) the tool writes the run's config (the file, then
``--cfg-options``, then the variant's overrides, then ``randomness.seed``),
trains it with ``tools/train.py`` in a subprocess (the normal Runner), takes
the checkpoint that the config's ``save_best`` chose on the **val** split,
tests it on the **test** split with ``tools/test.py --out``, and records R1,
R5, R10, mAP, mINP, the training wall time and the time to the best
checkpoint. ``--short-epochs K`` also tests the best-on-val checkpoint among
those of epochs <= K (the "short budget" figure from the same training run).

It writes, under the work dir, ``compare.md`` (mean +- sample std over seeds
per variant), ``compare.png`` (bars with error bars) and ``runs.json`` (all
runs). A second invocation skips finished runs and resumes unfinished ones
(``tools/train.py --resume``), so an interrupted sweep is completed by running
the same command again.

Variants (``--variants``): the built-in names ``baseline``, ``+dll``,
``+cim``, ``full``, or ``NAME:TERM,TERM,...`` where a TERM is a config
override ``key=value`` (parsed like ``--cfg-options``; a value with commas
goes in brackets, e.g. ``[1,2]``) or a built-in variant name whose overrides
are included, e.g. ``dll-half:+dll,model.loss_weights.id_local=0.5``.
See docs/compare.md.
"""
import argparse
import copy
import importlib.util
import json
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
import traceback
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction

TOOLS_DIR = osp.dirname(osp.abspath(__file__))

#: Overrides of the built-in variants (applied to the config as given).
BUILTIN_VARIANTS: Dict[str, List[str]] = OrderedDict([
    # global branch only: ID + matching loss on the global features
    ('baseline', ['model.image_local=None', 'model.cross_modal=None',
                  'model.retrieval_features=global']),
    # + disordered local learning (retrieval features as in the config)
    ('+dll', ['model.cross_modal=None']),
    # + cross-modal interaction (training only; retrieval is global)
    ('+cim', ['model.image_local=None', 'model.retrieval_features=global']),
    # the config as it is
    ('full', []),
])

METRICS = ('R1', 'R5', 'R10', 'mAP', 'mINP')
REGIMES = ('converged', 'short')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.+-]+$')
_CKPT_RE = re.compile(r'^(?:best_.+_)?(epoch|iter)_(\d+)\.pth$')


class CompareError(Exception):
    """A problem with the command line, the config or a run's files."""


# ----------------------------------------------------------------- variants
def split_terms(text: str) -> List[str]:
    """Split ``text`` at commas outside brackets and quotes.

    Args:
        text: ``'a=1,b=[1,2],c="x,y"'``.

    Returns:
        ``['a=1', 'b=[1,2]', 'c="x,y"']`` (empty terms dropped).
    """
    terms, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in '\'"':
            quote = ch
        elif ch in '([':
            depth += 1
        elif ch in ')]':
            depth -= 1
        elif ch == ',' and depth == 0:
            terms.append(''.join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    terms.append(''.join(cur).strip())
    return [t for t in terms if t]


def parse_variant(spec: str) -> Tuple[str, List[str]]:
    """Parse one ``--variants`` item.

    Args:
        spec: A built-in name, or ``NAME:TERM,TERM,...`` (a TERM is
            ``key=value`` or a built-in name whose overrides are included).

    Returns:
        The name and its list of ``key=value`` overrides.

    Raises:
        CompareError: Unknown built-in name, bad name or bad term.
    """
    if ':' not in spec:
        if spec not in BUILTIN_VARIANTS:
            raise CompareError(
                f'--variants: {spec!r} is not a built-in variant '
                f'({", ".join(BUILTIN_VARIANTS)}); a custom variant is '
                "written NAME:key=value,key=value (e.g. "
                "'lw:model.loss_weights.id_local=0.5').")
        return spec, list(BUILTIN_VARIANTS[spec])
    name, body = spec.split(':', 1)
    name = name.strip()
    if not _NAME_RE.match(name):
        raise CompareError(
            f'--variants: bad variant name {name!r} in {spec!r}; use letters, '
            'digits and _ . + - only (it names a folder).')
    overrides: List[str] = []
    for term in split_terms(body):
        if '=' in term:
            key = term.split('=', 1)[0].strip()
            if not key or ' ' in key:
                raise CompareError(
                    f'--variants: bad override {term!r} in {spec!r}; expected '
                    'key=value.')
            overrides.append(term)
        elif term in BUILTIN_VARIANTS:
            overrides.extend(BUILTIN_VARIANTS[term])
        else:
            raise CompareError(
                f'--variants: {term!r} in {spec!r} is neither key=value nor a '
                f'built-in variant ({", ".join(BUILTIN_VARIANTS)}).')
    return name, overrides


def parse_overrides(pairs: Sequence[str]) -> dict:
    """Parse ``key=value`` strings exactly like ``--cfg-options`` does.

    Args:
        pairs: ``key=value`` strings.

    Returns:
        ``{key: parsed value}`` in order.
    """
    if not pairs:
        return {}
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--o', nargs='+', action=DictAction)
    return parser.parse_args(['--o', *pairs]).o


def parse_seeds(text: str) -> List[int]:
    """Parse ``--seeds``.

    Args:
        text: A number of seeds (``'3'`` -> ``[0, 1, 2]``) or a comma list
            (``'0,4,7'``).

    Returns:
        The distinct seeds in order.

    Raises:
        CompareError: Not a number or list, or repeated seeds.
    """
    try:
        if ',' in text:
            seeds = [int(s) for s in text.split(',') if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise CompareError(
            f"--seeds: expected a number of seeds (e.g. 3) or a comma "
            f"list of seeds (e.g. 0,4,7), got {text!r}.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise CompareError(f'--seeds: need distinct seeds, got {text!r}.')
    return seeds


def _check_keys(cfg: Config, overrides: dict, where: str) -> None:
    """Every override's parent must exist in the config (typos fail here)."""
    for key in overrides:
        node = cfg
        parts = key.split('.')
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, (list, tuple)) and part.isdigit():
                ok = int(part) < len(node)
                node = node[int(part)] if ok else None
            else:
                ok = isinstance(node, (dict, Config)) and part in node
                node = node[part] if ok else None
            if not ok:
                raise CompareError(
                    f"{where}: override '{key}': the config has no "
                    f"'{'.'.join(parts[:i + 1])}'.")
            if node is None and i < len(parts) - 2:
                raise CompareError(
                    f"{where}: override '{key}': "
                    f"'{'.'.join(parts[:i + 1])}' is None in the config.")


def _check_model(cfg: Config, where: str) -> None:
    """Model constraints that would otherwise fail inside the training run."""
    model = cfg.get('model', {})
    if model.get('type') == 'MDRL' and not model.get('image_local') and \
            model.get('retrieval_features') == 'global+local':
        raise CompareError(
            f"{where}: model.retrieval_features='global+local' needs "
            "model.image_local; add model.retrieval_features=global.")


# ------------------------------------------------------------- run configs
def build_run_config(base: Config, cfg_options: dict, overrides: List[str],
                     seed: int, short_epochs: Optional[int],
                     where: str) -> Config:
    """The config of one run.

    Args:
        base: The loaded config (not modified).
        cfg_options: Sweep-wide overrides (``--cfg-options``).
        overrides: The variant's ``key=value`` overrides.
        seed: ``randomness.seed``.
        short_epochs: ``--short-epochs`` (keeps every validated epoch's
            checkpoint) or None.
        where: Names the run in error messages.

    Returns:
        A new config.
    """
    cfg = copy.deepcopy(base)
    parsed = parse_overrides(overrides)
    _check_keys(cfg, parsed, where)
    cfg.merge_from_dict(cfg_options)
    cfg.merge_from_dict(parsed)
    cfg.merge_from_dict({'randomness.seed': seed})
    _check_model(cfg, where)
    ckpt = cfg.get('default_hooks', {}).get('checkpoint')
    if not ckpt or not isinstance(ckpt.get('save_best'), str) or \
            ckpt.get('save_best') == 'auto':
        raise CompareError(
            f'{where}: the checkpoint on val is chosen by '
            "default_hooks.checkpoint.save_best, which must name one metric "
            "(e.g. save_best='R1', rule='greater'); the config has "
            f"{None if not ckpt else ckpt.get('save_best')!r}.")
    if short_epochs is not None:
        train_cfg = cfg.get('train_cfg', {})
        if train_cfg.get('type', 'EpochBasedTrainLoop') not in (
                'EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop') or \
                'max_epochs' not in train_cfg:
            raise CompareError(
                f'{where}: --short-epochs needs an epoch-based train_cfg '
                f"(EpochBasedTrainLoop with max_epochs), got {train_cfg}.")
        val_epochs = validated_epochs(train_cfg)
        if not [e for e in val_epochs if e <= short_epochs]:
            raise CompareError(
                f'{where}: --short-epochs {short_epochs}: no validation at or '
                f'before epoch {short_epochs} (validated epochs: '
                f'{val_epochs[:5]}...); lower train_cfg.val_interval.')
        # a checkpoint at every validated epoch, none deleted
        ckpt.update(interval=int(train_cfg.get('val_interval', 1)),
                    max_keep_ckpts=-1, by_epoch=True)
    return cfg


def validated_epochs(train_cfg: dict) -> List[int]:
    """Epochs after which ``EpochBasedTrainLoop`` validates.

    Args:
        train_cfg: ``max_epochs`` and optional ``val_interval``/``val_begin``.

    Returns:
        The validated epochs (the last epoch always is).
    """
    max_epochs = int(train_cfg['max_epochs'])
    interval = int(train_cfg.get('val_interval', 1))
    begin = int(train_cfg.get('val_begin', 1))
    return [e for e in range(1, max_epochs + 1)
            if e >= begin and (e % interval == 0 or e == max_epochs)]


# ----------------------------------------------------------- run artefacts
def read_json(path: str) -> Optional[dict]:
    """Read a JSON file.

    Args:
        path: The file.

    Returns:
        Its content, or None when it is missing or unreadable (e.g. cut by a
        kill).
    """
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path: str, obj) -> None:
    """Write ``obj`` as JSON atomically (never a partial file).

    Args:
        path: The file.
        obj: A JSON-serialisable object.
    """
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2, sort_keys=False)
    os.replace(tmp, path)


def val_scores(work_dir: str, metric: str) -> Dict[int, float]:
    """Validation ``metric`` per epoch (or iteration) from the run's logs.

    Reads every ``<work_dir>/<timestamp>/vis_data/scalars.json`` in time
    order (a resumed run has one per attempt; later values win).

    Args:
        work_dir: The training work dir.
        metric: The ``save_best`` metric name.

    Returns:
        ``{step: value}``.
    """
    scores: Dict[int, float] = {}
    if not osp.isdir(work_dir):
        return scores
    for stamp in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
        if not osp.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a kill
                    continue
                if metric in row and 'step' in row:
                    scores[int(row['step'])] = float(row[metric])
    return scores


def checkpoints(work_dir: str) -> Dict[str, List[Tuple[int, str]]]:
    """The checkpoint files of a work dir.

    Args:
        work_dir: The training work dir.

    Returns:
        ``{'plain': [(step, path)], 'best': [(step, path)]}`` for
        ``epoch_N.pth``/``iter_N.pth`` and ``best_<metric>_epoch_N.pth``.
    """
    found: Dict[str, List[Tuple[int, str]]] = dict(plain=[], best=[])
    if not osp.isdir(work_dir):
        return found
    for name in sorted(os.listdir(work_dir)):
        match = _CKPT_RE.match(name)
        if match:
            kind = 'best' if name.startswith('best_') else 'plain'
            found[kind].append((int(match.group(2)),
                                osp.join(work_dir, name)))
    return found


def pick_best(scores: Dict[int, float], steps: Sequence[int],
              rule: str) -> Optional[int]:
    """The step with the best score among ``steps``.

    Args:
        scores: Val score per step.
        steps: Candidate steps (those without a score are ignored).
        rule: ``'greater'`` or ``'less'`` (as ``CheckpointHook``).

    Returns:
        The best step (ties: the earliest, as ``save_best`` keeps the first),
        or None when no candidate has a score.
    """
    cands = [s for s in sorted(steps) if s in scores]
    if not cands:
        return None
    sign = 1.0 if rule == 'greater' else -1.0
    return max(cands, key=lambda s: (sign * scores[s], -s))


class Attempts:
    """Wall-clock bookkeeping of a run's training attempts.

    An attempt that ended without success (killed or failed) counts up to
    its run's newest checkpoint, the point the next attempt resumes from.

    Args:
        path: The JSON file holding the attempts.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: List[dict] = (read_json(path) or {}).get('attempts', [])

    def _save(self) -> None:
        write_json(self.path, dict(attempts=self.items))

    def close_unfinished(self, newest_ckpt_mtime: Optional[float]) -> None:
        """Give unfinished attempts their counted end."""
        for a in self.items:
            if a.get('counted_end') is None:
                end = newest_ckpt_mtime or a['start']
                a['counted_end'] = min(max(end, a['start']),
                                       a.get('end') or math.inf)
        self._save()

    def start(self) -> dict:
        """Record a new attempt starting now."""
        item = dict(start=time.time(), end=None, counted_end=None, rc=None)
        self.items.append(item)
        self._save()
        return item

    def finish(self, item: dict, rc: int) -> None:
        """Record the end of ``item``."""
        item.update(end=time.time(), rc=rc)
        if rc == 0:
            item['counted_end'] = item['end']
        self._save()

    def elapsed(self, t: Optional[float] = None) -> float:
        """Counted seconds of all attempts, or up to wall-clock time ``t``."""
        total = 0.0
        for a in self.items:
            end = a.get('counted_end') or a.get('end') or a['start']
            if t is not None and a['start'] <= t <= end:
                return total + (t - a['start'])
            total += end - a['start']
        return total


# ---------------------------------------------------------------- one run
class Run:
    """One (variant, seed) of the sweep and its files.

    Args:
        root: The sweep's work dir.
        variant: Variant name.
        seed: Random seed.
        cfg: The run's config.
        spec: What defines the run (compared on a rerun).
        short_epochs: ``--short-epochs`` or None.
    """

    def __init__(self, root: str, variant: str, seed: int, cfg: Config,
                 spec: dict, short_epochs: Optional[int]) -> None:
        self.variant, self.seed, self.cfg, self.spec = variant, seed, cfg, spec
        self.short_epochs = short_epochs
        self.dir = osp.join(root, 'runs', variant, f'seed_{seed}')
        self.work_dir = osp.join(self.dir, 'work')
        self.config_file = osp.join(self.dir, 'config.py')
        self.result_file = osp.join(self.dir, 'result.json')
        ckpt = cfg.default_hooks.checkpoint
        self.metric = ckpt.save_best
        self.rule = ckpt.get('rule') or ('less' if 'loss' in self.metric
                                         else 'greater')

    @property
    def name(self) -> str:
        """``variant/seed_S``."""
        return f'{self.variant}/seed_{self.seed}'

    def result(self) -> Optional[dict]:
        """The finished run's record, or None."""
        res = read_json(self.result_file)
        if res is None:
            return None
        if self.short_epochs is not None and res.get('short') is None:
            return None
        return res

    def check_spec(self) -> None:
        """Refuse a run folder made with other settings."""
        old = read_json(osp.join(self.dir, 'spec.json'))
        if old is not None and old != self.spec:
            diff = sorted(k for k in set(old) | set(self.spec)
                          if old.get(k) != self.spec.get(k))
            raise CompareError(
                f'{self.dir} was made with other settings ({", ".join(diff)} '
                'differ); use another --work-dir or delete that folder.')

    def prepare(self) -> None:
        """Create the run folder, its settings and its config file."""
        os.makedirs(self.dir, exist_ok=True)
        spec_file = osp.join(self.dir, 'spec.json')
        if not osp.isfile(spec_file):
            write_json(spec_file, self.spec)
        self.cfg.dump(self.config_file)

    def train(self, runner: 'ToolRunner', train_args: Sequence[str],
              log) -> None:
        """Train (or resume) unless training already finished."""
        attempts = Attempts(osp.join(self.dir, 'train_time.json'))
        done = osp.join(self.dir, 'train_done')
        if osp.isfile(done):
            return
        resume_from = self.resume_checkpoint()
        attempts.close_unfinished(
            os.stat(resume_from).st_mtime if resume_from else None)
        cmd = [self.config_file, '--work-dir', self.work_dir, *train_args]
        if attempts.items:
            cmd += ['--resume'] + ([resume_from] if resume_from else [])
        log(f'[{self.name}] {"resuming" if attempts.items else "training"}')
        item = attempts.start()
        rc = runner.run('train', cmd, osp.join(self.dir, 'train.log'))
        attempts.finish(item, rc)
        if rc != 0:
            raise CompareError(
                f'[{self.name}] training failed (exit status {rc}); see '
                f"{osp.join(self.dir, 'train.log')}:\n"
                f"{tail(osp.join(self.dir, 'train.log'))}")
        with open(done, 'w') as f:
            f.write('ok\n')

    def resume_checkpoint(self) -> Optional[str]:
        """The newest complete checkpoint whose validation was logged.

        A run killed between saving epoch N and logging its validation would,
        resumed from epoch N, never validate epoch N; it is resumed from the
        newest earlier checkpoint whose validation is logged (or that needs
        none) when there is one.

        Returns:
            A checkpoint path, or None (``--resume`` then picks the newest).
        """
        from mdrl_plugin.engine.checkpoint import is_complete_checkpoint
        train_cfg = self.cfg.get('train_cfg', {})
        due = set(validated_epochs(train_cfg)) if 'max_epochs' in train_cfg \
            else set()
        scores = val_scores(self.work_dir, self.metric)
        for step, path in sorted(checkpoints(self.work_dir)['plain'],
                                 reverse=True):
            if (step not in due or step in scores) and \
                    is_complete_checkpoint(path):
                return path
        return None

    def select(self) -> dict:
        """The checkpoints to test: best on val overall and up to K epochs."""
        scores = val_scores(self.work_dir, self.metric)
        found = checkpoints(self.work_dir)
        if not found['best']:
            raise CompareError(
                f'[{self.name}] no best_{self.metric}_*.pth in '
                f'{self.work_dir}: did validation run (train_cfg.val_interval'
                ' <= max_epochs)?')
        # the best val score among the epochs with a checkpoint (ties: the
        # earlier): the save_best file of an uninterrupted run; after a
        # resume the logged scores of all attempts decide
        files = dict(found['plain'])
        files.update(found['best'])
        step = pick_best(scores, list(files), self.rule)
        if step is None:
            step = max(dict(found['best']))
        picks = dict(converged=dict(step=step, ckpt=files[step],
                                    val=scores.get(step)))
        if self.short_epochs is not None:
            early = [s for s in files if s <= self.short_epochs]
            short = pick_best(scores, early, self.rule)
            if short is None:
                raise CompareError(
                    f'[{self.name}] --short-epochs {self.short_epochs}: no '
                    f'validated checkpoint of epoch <= {self.short_epochs} '
                    f'in {self.work_dir} (checkpoints: {sorted(files)}; '
                    f'validated: {sorted(scores)}). Checkpoints of a finished'
                    ' run are pruned unless --keep-checkpoints was given.')
            picks['short'] = dict(step=short, ckpt=files[short],
                                  val=scores.get(short))
        return picks

    def test(self, runner: 'ToolRunner', regime: str, ckpt: str,
             log) -> dict:
        """Test ``ckpt`` on the test split (skipped when already done)."""
        out = osp.join(self.dir, f'test_{regime}.json')
        metrics = read_json(out)
        if metrics is not None and metrics.get('_checkpoint') == \
                osp.basename(ckpt):
            return metrics
        log(f'[{self.name}] testing {osp.basename(ckpt)} ({regime})')
        raw = osp.join(self.dir, f'test_{regime}.raw.json')
        cmd = [self.config_file, ckpt, '--work-dir',
               osp.join(self.dir, f'test_{regime}'), '--out', raw]
        logfile = osp.join(self.dir, f'test_{regime}.log')
        rc = runner.run('test', cmd, logfile)
        metrics = read_json(raw)
        if rc != 0 or metrics is None:
            raise CompareError(
                f'[{self.name}] testing failed (exit status {rc}); see '
                f'{logfile}:\n{tail(logfile)}')
        metrics['_checkpoint'] = osp.basename(ckpt)
        write_json(out, metrics)
        os.remove(raw)
        return metrics

    def finish(self, picks: dict, tests: dict, keep_checkpoints: bool) -> dict:
        """Write ``result.json`` and prune checkpoints no figure needs."""
        attempts = Attempts(osp.join(self.dir, 'train_time.json'))
        res = dict(variant=self.variant, seed=self.seed, run_dir=self.dir,
                   overrides=self.spec['overrides'],
                   retrieval_features=self.cfg.model.get(
                       'retrieval_features'),
                   train_time_s=round(attempts.elapsed(), 2),
                   attempts=len(attempts.items))
        for regime, pick in picks.items():
            mtime = os.stat(pick['ckpt']).st_mtime
            res[regime] = dict(
                step=pick['step'], checkpoint=osp.basename(pick['ckpt']),
                val=pick['val'],
                time_to_ckpt_s=round(attempts.elapsed(mtime), 2),
                test={k: tests[regime].get(k) for k in METRICS})
        if not keep_checkpoints:
            needed = {p['ckpt'] for p in picks.values()}
            for _, path in checkpoints(self.work_dir)['plain']:
                if path not in needed:
                    os.remove(path)
        write_json(self.result_file, res)
        return res


class ToolRunner:
    """Runs ``tools/train.py`` and ``tools/test.py`` in child processes.

    By default (where ``os.fork`` exists) the tools are imported once in this
    process and every run is a forked child calling the tool's ``main``: each
    run still has its own process (its own global state, killed with the
    sweep, a crash stays in it), without paying the imports of torch and the
    plugin again (about 7 CPU seconds per process). ``fork=False`` starts
    ``python tools/<tool>.py`` as a plain subprocess instead.

    Args:
        fork: Fork from this process (falls back to subprocesses where fork
            is unavailable).
    """

    def __init__(self, fork: bool = True) -> None:
        self.fork = fork and hasattr(os, 'fork')
        self._tools: dict = {}

    def _tool(self, name: str):
        if name not in self._tools:
            path = osp.join(TOOLS_DIR, f'{name}.py')
            spec = importlib.util.spec_from_file_location(
                f'_mdrl_{name}_tool', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._tools[name] = module
        return self._tools[name]

    def run(self, tool: str, argv: List[str], logfile: str) -> int:
        """Run ``tools/<tool>.py argv`` with its output appended to logfile.

        Args:
            tool: ``'train'`` or ``'test'``.
            argv: The tool's arguments.
            logfile: Receives stdout and stderr.

        Returns:
            The exit status.
        """
        script = osp.join(TOOLS_DIR, f'{tool}.py')
        with open(logfile, 'a') as f:
            f.write(f'\n$ {sys.executable} {script} {" ".join(argv)}\n')
        if not self.fork:
            with open(logfile, 'a') as f:
                proc = subprocess.Popen([sys.executable, script, *argv],
                                        stdout=f, stderr=subprocess.STDOUT)
                return _wait(proc.pid, proc.wait)
        main = self._tool(tool).main
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            rc = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                fd = os.open(logfile, os.O_WRONLY | os.O_APPEND)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                sys.argv = [script, *argv]
                rc = main(list(argv))
                rc = rc if isinstance(rc, int) else 0
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else (e.code is not None)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(int(rc))

        def wait() -> int:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

        return _wait(pid, wait)


def _wait(pid: int, wait) -> int:
    """``wait()`` for child ``pid``; stop the child when we are stopped."""
    try:
        return wait()
    except BaseException:
        os.kill(pid, signal.SIGTERM)
        wait()
        raise


def tail(path: str, lines: int = 15) -> str:
    """The last lines of a text file."""
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


# ------------------------------------------------------------------ report
def mean_std(values: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation.

    Args:
        values: At least one value.

    Returns:
        The mean and the standard deviation with ``n - 1`` (None for one
        value).
    """
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def summarize(results: List[dict], variants: Sequence[str]) -> dict:
    """Statistics over seeds.

    Args:
        results: Finished runs (``result.json`` contents).
        variants: Variant names in report order.

    Returns:
        ``{regime: {variant: {field: dict(mean, std, n), 'seeds': [...],
        'retrieval_features': str}}}``.
    """
    summary: dict = {}
    for regime in REGIMES:
        per_variant = OrderedDict()
        for v in variants:
            runs = [r for r in results if r['variant'] == v and r.get(regime)]
            if not runs:
                continue
            fields = OrderedDict()
            for m in METRICS:
                fields[m] = [r[regime]['test'][m] for r in runs]
            fields['step'] = [r[regime]['step'] for r in runs]
            fields['time_to_ckpt_s'] = [r[regime]['time_to_ckpt_s']
                                        for r in runs]
            fields['train_time_s'] = [r['train_time_s'] for r in runs]
            stats = OrderedDict()
            for k, vals in fields.items():
                mean, std = mean_std(vals)
                stats[k] = dict(mean=mean, std=std, n=len(vals))
            stats['seeds'] = [r['seed'] for r in runs]
            stats['retrieval_features'] = runs[0].get('retrieval_features')
            per_variant[v] = stats
        if per_variant:
            summary[regime] = per_variant
    return summary


def _fmt(stat: dict, digits: int) -> str:
    if stat['std'] is None:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_report(summary: dict, title: str, header_lines: List[str],
                    short_epochs: Optional[int],
                    variant_overrides: Dict[str, List[str]]) -> str:
    """The Markdown report.

    Args:
        summary: From :func:`summarize`.
        title: The heading.
        header_lines: Lines under the heading.
        short_epochs: ``--short-epochs`` (for the caption).
        variant_overrides: Each variant's overrides (listed at the end).

    Returns:
        The Markdown text.
    """
    lines = [f'# {title}', ''] + header_lines + ['']
    captions = dict(
        converged='Converged: the checkpoint chosen on val over the whole '
        'run, tested on test',
        short=f'Short budget: the best checkpoint on val among epochs <= '
        f'{short_epochs}, tested on test')
    for regime, per_variant in summary.items():
        lines += [f'## {captions[regime]}', '',
                  '| variant | seeds | retrieval | ' +
                  ' | '.join(METRICS) + ' | epoch chosen | time to best (s) '
                  '| train time (s) |',
                  '| --- ' * (len(METRICS) + 6) + '|']
        for v, s in per_variant.items():
            row = [v, str(len(s['seeds'])), str(s['retrieval_features'])]
            row += [_fmt(s[m], 2) for m in METRICS]
            row += [_fmt(s['step'], 1), _fmt(s['time_to_ckpt_s'], 0),
                    _fmt(s['train_time_s'], 0)]
            lines.append('| ' + ' | '.join(row) + ' |')
        lines.append('')
    lines += ['Mean ± sample standard deviation over seeds (no ± for one '
              'seed). Train time: wall seconds of the training subprocess '
              '(all attempts of a resumed run up to the checkpoint it '
              'resumed from). Time to best: training wall seconds until the '
              'chosen checkpoint was written.', '',
              '## Variants', '']
    for v, ov in variant_overrides.items():
        shown = ', '.join(f'`{o}`' for o in ov) or 'the config as it is'
        lines.append(f'- `{v}`: {shown}')
    lines.append('')
    return '\n'.join(lines)


def bar_chart(summary: dict, path: str, title: str,
              short_epochs: Optional[int] = None) -> None:
    """Write grouped bars with the standard deviation as error bars.

    One panel per regime, one group per metric, one bar per variant.

    Args:
        summary: From :func:`summarize`.
        path: The PNG file.
        title: The figure title.
        short_epochs: ``--short-epochs`` (for the panel title).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    regimes = list(summary)
    fig, axes = plt.subplots(1, len(regimes), figsize=(6.5 * len(regimes), 4),
                             squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        per_variant = summary[regime]
        n = len(per_variant)
        width = 0.8 / max(n, 1)
        for i, (v, s) in enumerate(per_variant.items()):
            xs = [j + (i - (n - 1) / 2) * width for j in range(len(METRICS))]
            means = [s[m]['mean'] for m in METRICS]
            stds = [s[m]['std'] or 0.0 for m in METRICS]
            ax.bar(xs, means, width, yerr=stds, capsize=3,
                   label=f"{v} (n={len(s['seeds'])})")
        ax.set_xticks(range(len(METRICS)))
        ax.set_xticklabels(METRICS)
        ax.set_ylim(0, 105)
        ax.set_ylabel('test score (%)')
        ax.set_title('converged (best on val)' if regime == 'converged'
                     else f'short budget (epochs <= {short_epochs})')
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(root: str, config: str, variants: Dict[str, List[str]],
                 seeds: List[int], short_epochs: Optional[int],
                 results: List[dict], pending: List[str]) -> dict:
    """Write ``compare.md``, ``compare.png`` and ``runs.json``.

    Args:
        root: The sweep folder.
        config: The config file.
        variants: Each variant's overrides.
        seeds: The seeds.
        short_epochs: ``--short-epochs`` or None.
        results: Finished runs.
        pending: Names of the runs not finished.

    Returns:
        The summary (see :func:`summarize`).
    """
    summary = summarize(results, list(variants))
    title = f'Comparison of {osp.basename(config)}'
    header = [f'Config: `{config}`; seeds: {", ".join(map(str, seeds))}; '
              f'{len(results)} finished run(s).']
    if pending:
        header.append(f'Not finished: {", ".join(pending)}.')
    with open(osp.join(root, 'compare.md'), 'w') as f:
        f.write(markdown_report(summary, title, header, short_epochs,
                                variants))
    if summary:
        bar_chart(summary, osp.join(root, 'compare.png'), title,
                  short_epochs)
    write_json(osp.join(root, 'runs.json'), dict(
        config=config, seeds=seeds, short_epochs=short_epochs,
        variants=variants, runs=results, pending=pending, summary=summary))
    return summary


# -------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None
               ) -> Tuple[argparse.Namespace, List[str]]:
    """Parse the command line; what follows ``--`` goes to tools/train.py.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed arguments and the pass-through training arguments.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args: List[str] = []
    if '--' in argv:
        i = argv.index('--')
        argv, train_args = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(
        description='Train variants x seeds, choose on val, test on test, '
        'tabulate.',
        epilog='Everything after -- is passed to tools/train.py (e.g. -- '
        '--amp). See docs/compare.md.')
    parser.add_argument('config', help='the config file')
    parser.add_argument(
        '--variants', nargs='+', default=list(BUILTIN_VARIANTS),
        help='built-in names (baseline, +dll, +cim, full) or '
        'NAME:key=value,key=value,... (default: all built-ins)')
    parser.add_argument('--seeds', default='3',
                        help='number of seeds (0..N-1) or a comma list')
    parser.add_argument(
        '--short-epochs', type=int, default=None, metavar='K',
        help='also test the best-on-val checkpoint among epochs <= K')
    parser.add_argument(
        '--work-dir', help='sweep folder (default: '
        'work_dirs/compare_<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, default={},
        help='overrides for every run (before the variant\'s), as in '
        'tools/train.py')
    parser.add_argument(
        '--keep-checkpoints', action='store_true',
        help='keep every checkpoint (default: a finished run keeps only the '
        'tested ones)')
    parser.add_argument(
        '--no-fork', action='store_true',
        help='start each training/test as a fresh `python tools/...py` '
        'subprocess instead of forking this process (slower start)')
    parser.add_argument('--report-only', action='store_true',
                        help='only rewrite the report from finished runs')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the runs and their overrides, run nothing')
    args = parser.parse_args(argv)
    for flag in ('--work-dir', '--resume', '--cfg-options'):
        if any(a == flag or a.startswith(flag + '=') for a in train_args):
            parser.error(f'{flag} after --: give --work-dir/--cfg-options '
                         'to compare.py itself (before --); it sets '
                         '--resume itself.')
    if args.short_epochs is not None and args.short_epochs < 1:
        parser.error('--short-epochs must be >= 1')
    return args, train_args


def plan(args: argparse.Namespace, root: str) -> Tuple[Dict[str, List[str]],
                                                      List[int], List[Run]]:
    """Parse the variants and seeds and build every run's config."""
    if not osp.isfile(args.config):
        raise CompareError(f"config file '{args.config}' does not exist.")
    base = Config.fromfile(args.config)
    variants: Dict[str, List[str]] = OrderedDict()
    for spec in args.variants:
        name, overrides = parse_variant(spec)
        if name in variants:
            raise CompareError(f'--variants: {name!r} is given twice.')
        variants[name] = overrides
    seeds = parse_seeds(args.seeds)
    cfg_options = dict(args.cfg_options or {})
    _check_keys(base, cfg_options, '--cfg-options')
    runs = []
    for seed in seeds:
        for name, overrides in variants.items():
            where = f'variant {name!r} (seed {seed})'
            cfg = build_run_config(base, cfg_options, overrides, seed,
                                   args.short_epochs, where)
            spec = dict(config=osp.abspath(args.config),
                        cfg_options={k: repr(v)
                                     for k, v in cfg_options.items()},
                        overrides=overrides, seed=seed,
                        short_epochs=args.short_epochs)
            runs.append(Run(root, name, seed, cfg, spec, args.short_epochs))
    return variants, seeds, runs


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run (or resume) the sweep and write the report.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when every run finished.
    """
    args, train_args = parse_args(argv)
    root = args.work_dir or osp.join(
        'work_dirs', 'compare_' + osp.splitext(osp.basename(args.config))[0])

    def log(msg: str) -> None:
        print(f'compare.py: {msg}', flush=True)

    try:
        variants, seeds, runs = plan(args, root)
        for run in runs:
            run.check_spec()
    except CompareError as e:
        print(f'tools/compare.py: error: {e}', file=sys.stderr)
        return 2
    if args.dry_run:
        for run in runs:
            state = 'done' if run.result() else 'to run'
            print(f'{run.name}: {state}; overrides: '
                  f"{' '.join(run.spec['overrides']) or '(none)'}")
        return 0
    os.makedirs(root, exist_ok=True)
    # a SIGTERM (e.g. a job scheduler) stops the current subprocess too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    runner = ToolRunner(fork=not args.no_fork)
    results, pending, status = [], [], 0
    for run in runs:
        res = run.result()
        if res is None and not args.report_only and status == 0:
            try:
                run.prepare()
                run.train(runner, train_args, log)
                picks = run.select()
                tests: Dict[str, dict] = {}
                for regime, pick in picks.items():
                    same = [r for r in tests
                            if picks[r]['ckpt'] == pick['ckpt']]
                    tests[regime] = tests[same[0]] if same else \
                        run.test(runner, regime, pick['ckpt'], log)
                res = run.finish(picks, tests, args.keep_checkpoints)
                log(f'[{run.name}] done: test R1 '
                    f"{res['converged']['test']['R1']:.2f}")
            except CompareError as e:
                print(f'tools/compare.py: error: {e}', file=sys.stderr)
                status = 1
        elif res is not None:
            log(f'[{run.name}] finished before, skipped')
        if res is None:
            pending.append(run.name)
        else:
            results.append(res)
    write_report(root, args.config, variants, seeds, args.short_epochs,
                 results, pending)
    log(f"report: {osp.join(root, 'compare.md')}")
    return status


if __name__ == '__main__':
    sys.exit(main())

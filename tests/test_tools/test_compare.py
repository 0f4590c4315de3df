"""tools/analysis_tools/compare.py and configs/ablation/.

The sweep test reads MMEngine's ``scalars.json`` itself (not through the
tool's parser), and checks that the tested checkpoint was saved at the epoch
with the best val score, which is scripted to be the middle one (not the
last): by the checkpoint's ``meta.epoch``, and by its test scores (the toy
config tests on its val set, so they equal that epoch's val scores).
"""
import importlib.util
import json
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
from mmengine.config import Config

from mdrl_plugin.engine import safe_torch_load

from mdrl_test_utils import REPO_ROOT
from toy_helpers import TOY_DIR, TOY_ITER_CONFIG

pytestmark = pytest.mark.slow  # a sweep: 3 training/test processes

TOOL = osp.join(REPO_ROOT, 'tools', 'analysis_tools', 'compare.py')
_spec = importlib.util.spec_from_file_location('compare_tool', TOOL)
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

TOY_EPOCH_CONFIG = osp.join(TOY_DIR, 'configs', 'toy_epoch.py')
#: Its val score peaks at epoch 2 of 3 (40, 70, 50).
TOY_PEAK_CONFIG = osp.join(TOY_DIR, 'configs', 'toy_epoch_peak.py')
ABLATION = osp.join(REPO_ROOT, 'configs', 'ablation')
DEMO = osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py')


# ------------------------------------------------------------ the configs
#: The overrides of the former tools/compare.py's built-in variants.
OLD_VARIANTS = {
    'baseline': {'model.image_local': None, 'model.cross_modal': None,
                 'model.retrieval_features': 'global'},
    'dll': {'model.cross_modal': None},
    'cim': {'model.image_local': None, 'model.retrieval_features': 'global'},
    'full': {},
}


@pytest.mark.parametrize('variant', sorted(OLD_VARIANTS))
def test_ablation_config_is_the_demo_config_with_the_variant(variant):
    expected = Config.fromfile(DEMO)
    expected.merge_from_dict(OLD_VARIANTS[variant])
    cfg = Config.fromfile(osp.join(ABLATION, f'{variant}.py'))
    assert cfg.to_dict() == expected.to_dict()
    features = 'global' if variant in ('baseline', 'cim') else 'global+local'
    assert cfg.model.retrieval_features == features
    assert (cfg.model.image_local is None) == (variant in ('baseline', 'cim'))
    assert (cfg.model.cross_modal is None) == (variant in ('baseline', 'dll'))


def test_epochs_move_the_schedule():
    cfg = Config.fromfile(osp.join(ABLATION, 'full.py'))
    old = cfg.train_cfg.max_epochs
    opts = compare.epoch_options(cfg, 3 * old, 'full.py')
    assert opts == [f'train_cfg.max_epochs={3 * old}',
                    f'param_scheduler.1.end={3 * old}',
                    f'param_scheduler.1.T_max={3 * old - 1}']
    cfg.merge_from_dict(compare.parse_options(opts))
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 1)  # not at the last epoch
    assert (cosine.begin, cosine.end, cosine.T_max) == (1, 3 * old,
                                                        3 * old - 1)
    cfg.param_scheduler[0].by_epoch = False
    with pytest.raises(compare.CompareError,
                       match='param_scheduler.0 is iteration-based'):
        compare.epoch_options(cfg, 24, 'full.py')


# ------------------------------------------------------------------ refusals
def test_iteration_based_config_is_refused(tmp_path, capsys):
    argv = [TOY_ITER_CONFIG, '--work-dir', str(tmp_path / 'w')]
    assert compare.main(argv) == 2
    assert capsys.readouterr().err == (
        f'tools/analysis_tools/compare.py: error: {TOY_ITER_CONFIG}: '
        "train_cfg is 'IterBasedTrainLoop' without max_epochs; the tool tests "
        'the checkpoint saved at the best val epoch, so it needs an '
        'EpochBasedTrainLoop (an iteration-based loop logs its val scores at '
        'step 0 by default; it is refused, not misread).\n')
    assert not osp.exists(tmp_path / 'w')
    assert compare.main([TOY_EPOCH_CONFIG, '--cfg-options',
                         'default_hooks.checkpoint.save_best=None']) == 2
    assert "save_best must name one val metric (e.g. save_best='R1', " \
        "rule='greater'), got None." in capsys.readouterr().err
    assert compare.main([TOY_EPOCH_CONFIG, '--cfg-options', 'default_hooks.'
                         'logger.log_metric_by_epoch=False']) == 2
    assert 'logger.log_metric_by_epoch must be True' in \
        capsys.readouterr().err
    # a schedule that never validates would train in full for nothing
    full = osp.join(ABLATION, 'full.py')  # val_begin=3
    assert compare.main([full, '--epochs', '2', '--work-dir',
                         str(tmp_path / 'w')]) == 2
    assert capsys.readouterr().err == (
        f'tools/analysis_tools/compare.py: error: {full}: no epoch is '
        'validated (val_begin=3, max_epochs=2): no val score to choose by.\n')
    assert not osp.exists(tmp_path / 'w')
    with pytest.raises(SystemExit):  # 0 used to mean "the config's"
        compare.main([full, '--epochs', '0'])
    assert '--epochs must be >= 1' in capsys.readouterr().err
    assert compare.main([full, '--cfg-options', 'custom_hooks.99.x=1']) == 2
    assert capsys.readouterr().err.startswith(
        'tools/analysis_tools/compare.py: error: "Index 99 exceeds')


# -------------------------------------------------------------------- report
def _record(config, seed, r1, epochs=8, epoch=6, time_s=100.0):
    test = dict(R1=r1, R5=r1 + 20, R10=r1 + 30, mAP=r1 - 10, mINP=r1 - 20)
    return dict(config=config, seed=seed, epochs=epochs, picked_epoch=epoch,
                train_time_s=time_s, test=test)


def test_val_rows_read_val_rows_only(tmp_path):
    rows = [dict(lr=0.1, loss=2.5, epoch=1, iter=10, step=10),
            {'loss': 1.5, 'pedes/R1': 40.0, 'step': 1},
            dict(lr=0.1, loss=0.5, epoch=2, iter=20, step=20),
            {'loss': 1.25, 'pedes/R1': 50.0, 'step': 2}]
    for stamp, part in (('20260101_000000', rows[:2]),
                        ('20260102_000000', rows[2:])):  # a resumed run
        path = tmp_path / stamp / 'vis_data' / 'scalars.json'
        path.parent.mkdir(parents=True)
        path.write_text(''.join(json.dumps(r) + '\n' for r in part) +
                        '{"cut by a ki')
    assert compare.val_rows(str(tmp_path)) == {
        1: {'loss': 1.5, 'pedes/R1': 40.0}, 2: {'loss': 1.25, 'pedes/R1': 50.0}}


def test_report_table_paired_difference_and_chart(tmp_path):
    records = [_record('baseline', 0, 60.0), _record('full', 0, 66.0),
               _record('baseline', 1, 64.0, epoch=8),
               _record('full', 1, 63.0, time_s=120.0),
               _record('full', 2, 70.0)]
    md = compare.markdown(records, ['baseline', 'full'],
                          ['R1', 'mAP'], ('full', 'baseline'),
                          ['baseline/seed_2'], '8 epochs')
    assert compare.markdown(records, ['full'], ['R1'], None, [], '8 epochs',
                            'val').startswith('# Val scores at the epoch')
    assert md.splitlines()[:8] == [
        '# Test scores at the epoch chosen on val: 8 epochs', '',
        '5 finished run(s). Not finished: baseline/seed_2.', '',
        '| config | epochs | seeds | R1 | mAP | epoch chosen | '
        'train time (s) |',
        '| --- ' * 7 + '|',
        '| baseline | 8 | 0,1 | 62.00 ± 2.83 | 52.00 ± 2.83 | 7.0 ± 1.4 | '
        '100 ± 0 |',
        '| full | 8 | 0,1,2 | 66.33 ± 3.51 | 56.33 ± 3.51 | 6.0 ± 0.0 | '
        '107 ± 12 |']
    # seeds 0 and 1 have both: +6 and -1
    assert ('## full − baseline, per seed (8 epochs)\n\n| seed | R1 | mAP |\n'
            '| --- | --- | --- |\n| 0 | +6.00 | +6.00 |\n'
            '| 1 | -1.00 | -1.00 |\n| mean ± std | +2.50 ± 4.95 | '
            '+2.50 ± 4.95 |\n\nfull is ahead on R1 in 1 of 2 seed(s).') in md
    assert 'converged' not in md
    assert compare.regime([24, 8, 8]) == '8 / 24 epochs'
    compare.chart(records, ['baseline', 'full'], ['R1'], '8 epochs',
                  str(tmp_path / 'c.png'))
    assert (tmp_path / 'c.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# ----------------------------------------------------------------- the pick
def _write_val(train_dir, stamp, scores):
    os.makedirs(osp.join(train_dir, stamp, 'vis_data'))
    with open(osp.join(train_dir, stamp, 'vis_data', 'scalars.json'),
              'w') as f:
        f.write(json.dumps(dict(loss=0.5, step=3)) + '\n')
        for epoch, value in scores.items():
            f.write(json.dumps({'toy/accuracy': value, 'step': epoch}) + '\n')
        f.write('{"toy/accuracy": 99')  # a line cut by a kill


def test_pick_skips_an_epoch_without_checkpoint(tmp_path, capsys):
    cfg = Config.fromfile(TOY_EPOCH_CONFIG, import_custom_modules=False)
    run = compare.Run(TOY_EPOCH_CONFIG, 0, [], cfg, str(tmp_path), 'out')
    # attempt 1 validated epoch 1 and was killed before saving its best
    # checkpoint; attempt 2 resumed from epoch_1.pth and validated 2 and 3
    _write_val(run.train_dir, '20260101_000000', {1: 50.0})
    _write_val(run.train_dir, '20260101_010000', {2: 30.0, 3: 50.0, 4: 40.0})
    for name in ('best_toy_accuracy_epoch_3.pth', 'epoch_4.pth'):
        open(osp.join(run.train_dir, name), 'w').close()
    rows, epoch, ckpt = run.pick(print)
    assert {e: r['toy/accuracy'] for e, r in rows.items()} == {
        1: 50.0, 2: 30.0, 3: 50.0, 4: 40.0}
    assert (epoch, osp.basename(ckpt)) == (3, 'best_toy_accuracy_epoch_3.pth')
    assert capsys.readouterr().out == (
        '[toy_epoch/seed_0] epoch 1 has the best val score but no checkpoint '
        '(interrupted before its save); testing 3\n')
    os.remove(ckpt)
    assert run.pick(print)[1] == 4
    os.remove(osp.join(run.train_dir, 'epoch_4.pth'))
    with pytest.raises(compare.CompareError, match=re.escape(
            "no checkpoint of an epoch with a val 'toy/accuracy' (validated: "
            '[1, 2, 3, 4])')):
        run.pick(print)


# ------------------------------------------------------ a real tiny sweep
def _scalars(work_dir, metric):
    """{epoch: [value, ...]} of every val row, read here (not by the tool)."""
    rows = {}
    for stamp in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
        if osp.isfile(path):
            for line in open(path).read().splitlines():
                row = json.loads(line)
                if metric in row:
                    rows.setdefault(row['step'], []).append(row)
    return rows


def test_sweep_killed_resumed_picked_and_tested(tmp_path):
    work, out = str(tmp_path / 'work'), str(tmp_path / 'out')
    cmd = [sys.executable, TOOL, TOY_PEAK_CONFIG, '--seeds', '5',
           '--work-dir', work, '--out', out,
           '--metrics', 'toy/scripted', 'toy/accuracy', 'toy/score_sum',
           '--cfg-options', 'model.step_delay=0.3']
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(
        [TOY_DIR, REPO_ROOT]))
    run_dir = osp.join(work, 'toy_epoch_peak', 'seed_5')
    train_dir = osp.join(run_dir, 'train')

    # 1) stop the sweep (SIGTERM, as a scheduler would) once epoch 1 is
    # validated and its best checkpoint saved; epochs 2, 3 are not trained
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 1200  # generous: the machine may be busy
    while not osp.isfile(osp.join(train_dir,
                                  'best_toy_scripted_epoch_1.pth')):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.communicate(timeout=60)[0].splitlines() == [
        'compare.py: [toy_epoch_peak/seed_5] training']
    assert proc.returncode == 143
    assert not osp.exists(osp.join(out, 'records'))

    # 2) the same command resumes the training, tests, writes the record
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '[toy_epoch_peak/seed_5] resuming' in proc.stdout
    assert re.search(r'resumed epoch: [12], iter: [36]\b',
                     open(osp.join(run_dir, 'train.log')).read())
    rec = json.load(open(osp.join(out, 'records', 'toy_epoch_peak_seed5.json')))
    rows = _scalars(train_dir, 'toy/scripted')
    assert sorted(rows) == [1, 2, 3]
    last = {e: r[-1] for e, r in rows.items()}  # a resumed epoch: the last
    assert {e: r['toy/scripted'] for e, r in last.items()} == {
        1: 40.0, 2: 70.0, 3: 50.0}
    epoch = 2  # the val peak, before the last epoch
    assert rec['picked_epoch'] == epoch < rec['epochs'] == 3
    assert rec['checkpoint'] == 'best_toy_scripted_epoch_2.pth'
    assert (rec['seed'], rec['epochs'], rec['attempts']) == (5, 3, 2)
    ckpt = safe_torch_load(osp.join(train_dir, rec['checkpoint']))
    assert ckpt['meta']['epoch'] == epoch
    # the test set is the val set: the tested weights gave that epoch's
    # val scores (not the last epoch's 50)
    assert rec['test']['toy/scripted'] == 70.0
    assert rec['test']['toy/accuracy'] == last[epoch]['toy/accuracy']
    assert rec['test']['toy/score_sum'] == pytest.approx(
        last[epoch]['toy/score_sum'], abs=1e-4)
    # and the record keeps that epoch's val scores
    assert rec['val_metrics'] == {k: v for k, v in last[epoch].items()
                                  if k != 'step'}
    assert 0 < rec['train_time_s'] < time.time() - start
    # only the tested checkpoint is kept
    assert [f for f in os.listdir(train_dir) if f.endswith('.pth')] == [
        rec['checkpoint']]
    md = open(osp.join(out, 'compare.md')).read()
    assert md.startswith('# Test scores at the epoch chosen on val: 3 epochs')
    assert '| toy_epoch_peak | 3 | 5 | 70.00 |' in md
    # the report of the picked epoch's val scores (in-process)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        assert compare.main([*cmd[2:], '--report-only', '--scores', 'val',
                             '--metrics', 'toy/accuracy']) == 0
    finally:  # main() installs its own handler
        signal.signal(signal.SIGTERM, sigterm)
    md = open(osp.join(out, 'compare.md')).read()
    assert md.startswith('# Val scores at the epoch chosen on val: 3 epochs')
    assert (f"| toy_epoch_peak | 3 | 5 | {last[epoch]['toy/accuracy']:.2f} |"
            in md)

    # 3) a finished run is skipped; other settings are refused
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        'compare.py: [toy_epoch_peak/seed_5] finished before, skipped')
    proc = subprocess.run(cmd + ['--epochs', '4'], cwd=tmp_path, env=env,
                          text=True, capture_output=True, timeout=600)
    assert proc.returncode == 2
    assert 'was made with other settings (cfg_options, config_sha1 differ)' \
        in proc.stderr

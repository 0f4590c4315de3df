"""tools/compare.py: variant parsing, run configs, selection on val, the
report, and a real tiny sweep (2 variants x 2 seeds) that is killed, resumed
and skipped."""
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

from mdrl_test_utils import REPO_ROOT, shrink_config

_spec = importlib.util.spec_from_file_location(
    'compare_tool', osp.join(REPO_ROOT, 'tools', 'compare.py'))
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)


# ------------------------------------------------------------------ parsing
def test_builtin_variants():
    assert compare.parse_variant('baseline') == ('baseline', [
        'model.image_local=None', 'model.cross_modal=None',
        'model.retrieval_features=global'])
    assert compare.parse_variant('+dll') == ('+dll', ['model.cross_modal=None'])
    assert compare.parse_variant('+cim') == ('+cim', [
        'model.image_local=None', 'model.retrieval_features=global'])
    assert compare.parse_variant('full') == ('full', [])


def test_custom_variant_with_builtin_terms_and_brackets():
    name, overrides = compare.parse_variant(
        'dll-half:+dll, model.loss_weights.id_local=0.5,'
        'model.image_local.drop=[0.1,0.2],x.y="a,b"')
    assert name == 'dll-half'
    assert overrides == ['model.cross_modal=None',
                         'model.loss_weights.id_local=0.5',
                         'model.image_local.drop=[0.1,0.2]', 'x.y="a,b"']
    assert compare.parse_overrides(overrides[1:3]) == {
        'model.loss_weights.id_local': 0.5,
        'model.image_local.drop': [0.1, 0.2]}


@pytest.mark.parametrize('spec, message', [
    ('basline', "'basline' is not a built-in variant (baseline, +dll, +cim, "
     "full); a custom variant is written NAME:key=value,key=value"),
    ('a/b:x=1', "bad variant name 'a/b' in 'a/b:x=1'"),
    ('lw:model.loss_weights', "'model.loss_weights' in "
     "'lw:model.loss_weights' is neither key=value nor a built-in variant"),
])
def test_bad_variant(spec, message):
    with pytest.raises(compare.CompareError) as exc:
        compare.parse_variant(spec)
    assert message in str(exc.value)


def test_seeds():
    assert compare.parse_seeds('3') == [0, 1, 2]
    assert compare.parse_seeds('0,4,7') == [0, 4, 7]
    for bad in ('x', '0,0', '0'):
        with pytest.raises(compare.CompareError, match='--seeds'):
            compare.parse_seeds(bad)


def test_train_args_after_double_dash():
    args, train_args = compare.parse_args(
        ['c.py', '--variants', 'full', '--seeds', '2', '--', '--amp'])
    assert (args.variants, args.seeds, train_args) == (['full'], '2', ['--amp'])
    with pytest.raises(SystemExit):
        compare.parse_args(['c.py', '--', '--cfg-options', 'a=1'])


# -------------------------------------------------------------- run configs
def _demo_cfg():
    return Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))


def test_run_config_applies_options_variant_and_seed():
    base = _demo_cfg()
    cfg = compare.build_run_config(
        base, {'model.loss_weights.id_cim': 0.5, 'randomness.seed': 9},
        compare.BUILTIN_VARIANTS['baseline'] + ['model.loss_weights.id_cim=2'],
        seed=3, short_epochs=None, where='w')
    assert cfg.model.image_local is None and cfg.model.cross_modal is None
    assert cfg.model.retrieval_features == 'global'
    assert cfg.model.loss_weights.id_cim == 2  # the variant wins
    assert cfg.randomness.seed == 3  # the seed wins over everything
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 1  # untouched
    # the loaded config is not modified
    assert base.model.image_local.num_groups == 4
    assert base.model.retrieval_features == 'global+local'


def test_short_epochs_keeps_every_validated_checkpoint():
    base = _demo_cfg()
    # a fixed schedule, whatever the demo config's: 16 epochs, val every 4
    base.train_cfg.max_epochs, base.train_cfg.val_interval = 16, 4
    base.default_hooks.checkpoint.interval = 2
    cfg = compare.build_run_config(base, {}, [], seed=0,
                                   short_epochs=8, where='w')
    ckpt = cfg.default_hooks.checkpoint
    assert (ckpt.interval, ckpt.max_keep_ckpts, ckpt.save_best) == (4, -1, 'R1')
    assert compare.validated_epochs(cfg.train_cfg) == [4, 8, 12, 16]
    assert compare.validated_epochs(
        dict(max_epochs=10, val_interval=4, val_begin=5)) == [8, 10]
    with pytest.raises(compare.CompareError,
                       match='no validation at or before epoch 3'):
        compare.build_run_config(base, {}, [], 0, 3, 'w')


def test_run_config_errors():
    base = _demo_cfg()
    with pytest.raises(compare.CompareError) as exc:
        compare.build_run_config(base, {}, ['model.loss_weight.id_local=0'],
                                 0, None, "variant 'x' (seed 0)")
    assert str(exc.value) == ("variant 'x' (seed 0): override "
                              "'model.loss_weight.id_local': the config has "
                              "no 'model.loss_weight'.")
    with pytest.raises(compare.CompareError) as exc:
        compare.build_run_config(base, {}, ['model.image_local=None'], 0,
                                 None, 'v')
    assert "model.retrieval_features='global+local' needs model.image_local" \
        in str(exc.value)
    base.default_hooks.checkpoint.save_best = None
    with pytest.raises(compare.CompareError, match='save_best'):
        compare.build_run_config(base, {}, [], 0, None, 'v')


# ------------------------------------------------- selection and timing
def test_val_scores_and_pick(tmp_path):
    work = tmp_path / 'work'
    for stamp, rows in [('20260101_000000', [
            dict(loss=1.0, step=3), dict(R1=50.0, R5=70.0, step=1),
            dict(R1=60.0, step=2)]),
            ('20260101_010000', [dict(R1=55.0, step=2), dict(R1=55.0, step=3)])]:
        (work / stamp / 'vis_data').mkdir(parents=True)
        lines = [json.dumps(r) for r in rows] + ['{"R1": 9']  # cut by a kill
        (work / stamp / 'vis_data' / 'scalars.json').write_text(
            '\n'.join(lines) + '\n')
    scores = compare.val_scores(str(work), 'R1')
    assert scores == {1: 50.0, 2: 55.0, 3: 55.0}  # the later attempt wins
    assert compare.pick_best(scores, [1, 2, 3], 'greater') == 2  # tie: earlier
    assert compare.pick_best(scores, [1, 2, 3], 'less') == 1
    assert compare.pick_best(scores, [4], 'greater') is None


def test_attempts_count_up_to_the_resumed_checkpoint(tmp_path):
    att = compare.Attempts(str(tmp_path / 't.json'))
    att.items = [dict(start=100.0, end=None, counted_end=None, rc=None)]
    att.close_unfinished(newest_ckpt_mtime=130.0)  # killed; resumes from 130
    att.items.append(dict(start=200.0, end=250.0, counted_end=250.0, rc=0))
    assert att.elapsed() == 80.0
    assert att.elapsed(120.0) == 20.0
    assert att.elapsed(210.0) == 40.0
    assert compare.Attempts(str(tmp_path / 't.json')).items[0][
        'counted_end'] == 130.0


def test_resume_skips_a_checkpoint_whose_validation_was_lost(tmp_path):
    import torch
    cfg = compare.build_run_config(_demo_cfg(), {'train_cfg.val_interval': 1},
                                   [], 0, None, 'w')
    run = compare.Run(str(tmp_path), 'full', 0, cfg, {}, None)
    os.makedirs(osp.join(run.work_dir, '20260101_000000', 'vis_data'))
    for epoch in (1, 2):
        torch.save({'meta': {}}, osp.join(run.work_dir, f'epoch_{epoch}.pth'))
    # no validation logged at all: nothing qualifies (--resume picks)
    assert run.resume_checkpoint() is None
    scalars = osp.join(run.work_dir, '20260101_000000', 'vis_data',
                       'scalars.json')
    with open(scalars, 'w') as f:
        f.write(json.dumps(dict(R1=10.0, step=1)) + '\n')
    # killed after saving epoch 2 and before validating it: resume from 1
    assert run.resume_checkpoint() == osp.join(run.work_dir, 'epoch_1.pth')
    with open(scalars, 'a') as f:
        f.write(json.dumps(dict(R1=12.0, step=2)) + '\n')
    assert run.resume_checkpoint() == osp.join(run.work_dir, 'epoch_2.pth')


# ------------------------------------------------------------------ report
def _result(variant, seed, r1, step=2, time_s=10.0):
    test = dict(R1=r1, R5=90.0, R10=100.0, mAP=r1 / 2, mINP=r1 / 4)
    return dict(variant=variant, seed=seed, train_time_s=time_s,
                retrieval_features='global',
                converged=dict(step=step, time_to_ckpt_s=time_s / 2,
                               test=test))


def test_summary_table_and_chart(tmp_path):
    results = [_result('baseline', 0, 50.0), _result('baseline', 1, 54.0),
               _result('full', 0, 70.0, time_s=30.0)]
    summary = compare.write_report(
        str(tmp_path), 'c.py', {'baseline': ['a=1'], 'full': []}, [0, 1],
        None, results, ['full/seed_1'])
    assert summary['converged']['baseline']['R1'] == dict(
        mean=52.0, std=pytest.approx(2 ** 0.5 * 2), n=2)
    assert summary['converged']['full']['R1']['std'] is None
    md = (tmp_path / 'compare.md').read_text()
    assert ('| baseline | 2 | global | 52.00 ± 2.83 | 90.00 ± 0.00 | '
            '100.00 ± 0.00 | 26.00 ± 1.41 | 13.00 ± 0.71 | 2.0 ± 0.0 | 5 ± 0 '
            '| 10 ± 0 |') in md
    assert '| full | 1 | global | 70.00 | 90.00 |' in md
    assert 'Not finished: full/seed_1.' in md
    assert '- `baseline`: `a=1`' in md
    assert 'Short budget' not in md
    assert (tmp_path / 'compare.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    saved = json.loads((tmp_path / 'runs.json').read_text())
    assert saved['pending'] == ['full/seed_1'] and len(saved['runs']) == 3


# ------------------------------------------------------ a real tiny sweep
def _tiny_config(tmp_path, bert_dir, data_root) -> str:
    cfg = _demo_cfg()
    shrink_config(cfg, bert_dir, data_root)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3,
                         val_interval=1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='R1',
        rule='greater')
    cfg.log_processor = dict(window_size=1, by_epoch=True)
    cfg.train_dataloader.batch_size = 12  # 3 iterations per epoch
    path = str(tmp_path / 'tiny.py')
    cfg.dump(path)
    return path


def _compare_cmd(cfg_file, sweep):
    return [sys.executable, osp.join(REPO_ROOT, 'tools', 'compare.py'),
            cfg_file, '--variants', 'baseline',
            'lw:model.loss_weights.id_local=0.5', '--seeds', '2',
            '--short-epochs', '1', '--work-dir', sweep]


def test_sweep_killed_resumed_and_skipped(tiny_bert_dir, tiny_pedes_root,
                                          tmp_path):
    cfg_file = _tiny_config(tmp_path, tiny_bert_dir, tiny_pedes_root)
    sweep = str(tmp_path / 'sweep')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    cmd = _compare_cmd(cfg_file, sweep)
    last = osp.join(sweep, 'runs', 'lw', 'seed_1')

    # 1) kill the sweep (SIGTERM, as a scheduler would) while the last run
    # trains, once its first epoch is validated
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 1800
    while 1 not in compare.val_scores(osp.join(last, 'work'), 'R1'):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, out
    assert not osp.isfile(osp.join(last, 'result.json'))
    for done in ('baseline/seed_0', 'lw/seed_0', 'baseline/seed_1'):
        assert osp.isfile(osp.join(sweep, 'runs', done, 'result.json')), out

    # 2) rerun: the three finished runs are skipped, the last one resumes
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count('finished before, skipped') == 3
    assert '[lw/seed_1] resuming' in proc.stdout
    assert re.search(r'resumed epoch: [12], iter: [36]\b',
                     open(osp.join(last, 'train.log')).read())

    data = json.loads(open(osp.join(sweep, 'runs.json')).read())
    runs = {(r['variant'], r['seed']): r for r in data['runs']}
    assert sorted(runs) == [('baseline', 0), ('baseline', 1), ('lw', 0),
                            ('lw', 1)]
    assert data['pending'] == []
    assert runs[('lw', 1)]['attempts'] == 2
    assert runs[('lw', 0)]['overrides'] == ['model.loss_weights.id_local=0.5']
    assert runs[('baseline', 0)]['retrieval_features'] == 'global'
    assert runs[('lw', 0)]['retrieval_features'] == 'global+local'
    for (variant, seed), r in runs.items():
        run_dir = osp.join(sweep, 'runs', variant, f'seed_{seed}')
        cfg = Config.fromfile(osp.join(run_dir, 'config.py'))
        assert cfg.randomness.seed == seed
        assert (cfg.model.image_local is None) == (variant == 'baseline')
        assert r['short']['step'] == 1
        assert r['converged']['step'] in (1, 2, 3)
        # the converged pick is the best val R1 (ties: the earlier epoch)
        scores = compare.val_scores(osp.join(run_dir, 'work'), 'R1')
        assert sorted(scores) == [1, 2, 3]
        assert r['converged']['val'] == max(scores.values())
        assert r['converged']['step'] == min(
            s for s, v in scores.items() if v == max(scores.values()))
        # the test metrics are tools/test.py's, of the chosen checkpoint
        metrics = json.load(open(osp.join(run_dir, 'test_converged.json')))
        assert metrics['_checkpoint'] == r['converged']['checkpoint']
        assert r['converged']['test'] == {
            k: metrics[k] for k in ('R1', 'R5', 'R10', 'mAP', 'mINP')}
        assert 0 < r['converged']['time_to_ckpt_s'] <= r['train_time_s']
        # the tested checkpoints and the save_best file are kept
        kept = {f for f in os.listdir(osp.join(run_dir, 'work'))
                if f.endswith('.pth')}
        picked = {r['converged']['checkpoint'], r['short']['checkpoint']}
        assert picked <= kept
        assert {f for f in kept - picked if not f.startswith('best_')} == set()

    md = open(osp.join(sweep, 'compare.md')).read()
    for regime in ('converged', 'short'):
        for variant in ('baseline', 'lw'):
            r1 = [runs[(variant, s)][regime]['test']['R1'] for s in (0, 1)]
            mean = sum(r1) / 2
            std = abs(r1[0] - r1[1]) / 2 ** 0.5
            assert f'| {variant} | 2 |' in md
            assert f'{mean:.2f} ± {std:.2f}' in md
    assert 'Short budget: the best checkpoint on val among epochs <= 1' in md
    png = open(osp.join(sweep, 'compare.png'), 'rb').read()
    assert png[:8] == b'\x89PNG\r\n\x1a\n'

    # 3) a third invocation trains and tests nothing
    before = {f: os.stat(osp.join(sweep, 'runs', f)).st_mtime
              for f in ('baseline/seed_0/result.json', 'lw/seed_1/result.json')}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count('finished before, skipped') == 4
    assert 'training' not in proc.stdout and 'testing' not in proc.stdout
    assert before == {f: os.stat(osp.join(sweep, 'runs', f)).st_mtime
                      for f in before}

    # changed settings for an existing run folder are refused
    proc = subprocess.run(cmd[:-4] + ['--short-epochs', '2', '--work-dir',
                                      sweep], cwd=REPO_ROOT, env=env,
                          text=True, capture_output=True, timeout=300)
    assert proc.returncode == 2
    assert 'was made with other settings (short_epochs differ)' in proc.stderr

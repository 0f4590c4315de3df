"""The wheel: built with pip, installed into a fresh virtual environment
outside the repository, it imports, ships the configs and tools under
``mdrl_plugin/.mim/`` and trains the demo config from any folder.

The virtual environment sees the project's installed packages through a
``.pth`` file (``--no-deps``: nothing is downloaded), but not the checkout.
"""
import glob
import os
import os.path as osp
import shutil
import site
import subprocess
import sys
import sysconfig

import pytest

from mdrl_test_utils import REPO_ROOT

pytestmark = pytest.mark.slow  # pip, a training process

#: Prints the file of the package that ``import mdrl_plugin`` would load, and
#: ``mdrl_plugin.cli.shipped_root()`` (cli.py imports nothing heavy).
WHERE = """
import importlib.util, os.path
origin = importlib.util.find_spec('mdrl_plugin').origin
print(origin)
spec = importlib.util.spec_from_file_location(
    'cli', os.path.join(os.path.dirname(origin), 'cli.py'))
cli = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli)
print(cli.shipped_root())
"""
SOURCES = ['setup.py', 'README.md', 'CHANGELOG.md', 'MANIFEST.in',
           'requirements', 'mdrl_plugin', 'mdrl_deploy', 'configs', 'tools']


def run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=600, **kwargs)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def test_wheel_installs_and_trains_the_demo_from_anywhere(
        tmp_path, tiny_bert_dir, tiny_pedes_root):
    # a copy of the sources, so that no build/ folder lands in the checkout
    src = tmp_path / 'src'
    for name in SOURCES:
        path = osp.join(REPO_ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc', '.mim', '*.egg-info'))
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(path, src / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    run(pip + ['wheel', src, '-w', tmp_path / 'dist', '--no-deps',
               '--no-build-isolation', '--no-index', '-q'])
    wheel, = glob.glob(str(tmp_path / 'dist' / 'mdrl_plugin-*.whl'))

    venv = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', venv])
    python = venv / 'bin' / 'python'
    purelib = run([python, '-c', 'import sysconfig; '
                   'print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    with open(osp.join(purelib, 'project_env.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages() +
                          [sysconfig.get_paths()['purelib']]) + '\n')
    run(pip + ['--python', python, 'install', '--no-deps', '--no-index', '-q',
               wheel])

    work = tmp_path / 'anywhere'
    os.makedirs(work / 'checkpoints')
    os.makedirs(work / 'data')
    os.symlink(tiny_bert_dir, work / 'checkpoints' / 'all-MiniLM-L6-v2')
    os.symlink(tiny_pedes_root, work / 'data' / 'demo')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1')
    # the copy it imports and its shipped_root(), found without importing
    # torch (mdrl-train below imports it)
    where = run([python, '-c', WHERE], cwd=work, env=env).stdout.split()
    assert where == [osp.join(purelib, 'mdrl_plugin', '__init__.py'),
                     osp.join(purelib, 'mdrl_plugin', '.mim')]
    assert osp.isfile(osp.join(where[1], 'tools', 'train.py'))

    # 6 training identities x 3 images x 2 captions = 36 = 2 batches of 18
    proc = run([venv / 'bin' / 'mdrl-train', 'mdrl_demo.py', '--work-dir', 'w',
                '--cfg-options', 'model.num_classes=6', 'train_cfg.max_epochs=1',
                'train_dataloader.batch_size=18', 'train_dataloader.num_workers=0',
                'train_dataloader.persistent_workers=False',
                'model.image_encoder.arch_kwargs.depth=1', 'model.text_encoder.num_heads=2',
                'default_hooks.logger.interval=1'], cwd=work, env=env)
    log = proc.stdout + proc.stderr
    assert 'Epoch(train) [1][2/2]' in log, log[-4000:]
    assert osp.isfile(work / 'w' / 'epoch_1.pth')
    assert osp.isfile(work / 'w' / 'mdrl_demo.py')  # the shipped config, dumped

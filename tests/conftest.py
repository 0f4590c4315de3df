"""Shared fixtures: tiny Hugging Face BERT folders written by the tests themselves,
and a check that no test leaves the checkpoint-loading state changed; the
files marked ``slow`` run first."""
import os
import socket
import sys

import pytest

from mdrl_test_utils import REPO_ROOT, tiny_mdrl_cfg, write_tiny_bert

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


def _not_torchs(entry) -> bool:
    """Whether a safe-globals entry is not one torch adds itself when some of
    its modules are first imported (its own classes; torch.distributed adds
    the builtin exceptions and ``traceback``'s summaries)."""
    obj = entry[0] if isinstance(entry, tuple) else entry
    module = getattr(obj, '__module__', None) or ''
    return module.split('.')[0] not in ('torch', 'builtins', 'traceback')


def _loading_state():
    """MMEngine's checkpoint loaders by scheme (the safe-loading switch is
    the local one) and the safe globals torch was given from outside;
    defaults for what is not imported yet."""
    ckpt = sys.modules.get('mmengine.runner.checkpoint')
    serialization = sys.modules.get('torch.serialization')
    # no public getter for MMEngine's registered loaders
    return (dict(ckpt.CheckpointLoader._schemes) if ckpt else None,
            set(filter(_not_torchs, serialization.get_safe_globals()))
            if serialization else set())


def pytest_collection_modifyitems(items):
    """The files marked ``slow`` first: ``make test``'s two workers
    (pytest-xdist, one file each at a time, in this order) then end on many
    short files and finish together."""
    items.sort(key=lambda item: item.get_closest_marker('slow') is None)


@pytest.fixture(autouse=True)
def _no_checkpoint_loading_leak():
    """Fail a test that leaves the checkpoint loaders or torch's safe globals
    other than it found them (and put them back for the next test)."""
    schemes, safe_globals = _loading_state()
    yield
    now_schemes, now_globals = _loading_state()
    if schemes is None and now_schemes is not None:  # imported by the test
        from mmengine.runner.checkpoint import load_from_local
        schemes = dict(now_schemes, **{'': load_from_local})
    leaks = []
    if now_schemes is not None and now_schemes != schemes:
        from mmengine.runner.checkpoint import CheckpointLoader
        leaks.append('MMEngine checkpoint loaders: ' + ', '.join(
            f'{k!r}: {now_schemes.get(k)} (was {schemes.get(k)})'
            for k in {*schemes, *now_schemes}
            if now_schemes.get(k) is not schemes.get(k)))
        CheckpointLoader._schemes.clear()
        CheckpointLoader._schemes.update(schemes)
    if now_globals != safe_globals:
        import torch.serialization
        leaks.append(f'torch safe globals: {now_globals - safe_globals} '
                     f'added, {safe_globals - now_globals} removed')
        kept = [g for g in torch.serialization.get_safe_globals()
                if not _not_torchs(g)]
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(kept + list(safe_globals))
    if leaks:
        pytest.fail('the test left global state changed: ' +
                    '; '.join(leaks), pytrace=False)


@pytest.fixture(scope='session')
def tiny_bert_dir(tmp_path_factory) -> str:
    """Folder of a tiny random BERT (hidden 32, 2 layers) with a tokenizer."""
    return write_tiny_bert(str(tmp_path_factory.mktemp('tiny_bert')))


@pytest.fixture
def tiny_mdrl(tiny_bert_dir):
    """A freshly built tiny MDRL model (seeded)."""
    import torch

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))


@pytest.fixture(scope='session')
def tiny_pedes_root(tmp_path_factory) -> str:
    """A tiny synthetic dataset in the CUHK-PEDES layout (6/3/3 identities).

    Written by ``tools/make_demo_data.py``: 12 identities x 3 images, two
    captions per image; training split has 6 identities, val and test 9
    images each (odd, so 2 ranks pad one sample).
    """
    import subprocess
    import sys
    out = str(tmp_path_factory.mktemp('tiny_pedes'))
    subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'tools', 'make_demo_data.py'),
         out, '--num-ids', '12', '--images-per-id', '3', '--splits', '6,3,3',
         '--overwrite'],
        check=True, capture_output=True)
    return out


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> str:
    """Empty weight caches, offline mode, and no network at all.

    ``HF_HOME`` (hub cache ``HF_HOME/hub``) and ``TORCH_HOME`` point into
    ``tmp_path``, ``HF_HUB_OFFLINE=1``, and any connection attempt raises.
    huggingface_hub reads its settings once, at import, so its ``constants``
    are patched as well.

    Returns:
        The Hugging Face hub cache folder.
    """
    from huggingface_hub import constants
    hf_home, torch_home = tmp_path / 'hf_home', tmp_path / 'torch_home'
    cache = hf_home / 'hub'
    for name, value in (('HF_HOME', hf_home), ('HF_HUB_CACHE', cache),
                        ('TORCH_HOME', torch_home), ('HF_HUB_OFFLINE', '1')):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(constants, 'HF_HOME', str(hf_home))
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(cache))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)

    def no_network(*args, **kwargs):
        raise OSError('the tests never reach the network')

    monkeypatch.setattr(socket.socket, 'connect', no_network)
    monkeypatch.setattr(socket, 'getaddrinfo', no_network)
    return str(cache)

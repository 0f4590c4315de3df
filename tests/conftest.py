"""Shared fixtures: tiny Hugging Face BERT folders written by the tests themselves."""
import os
import socket

import pytest

from mdrl_test_utils import REPO_ROOT, tiny_mdrl_cfg, write_tiny_bert

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


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
    captions per image; training split has 6 identities, val and test 9 images each (odd, so 2 ranks pad one sample).
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

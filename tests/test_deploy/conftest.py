"""Fixtures of the deployment tests: a tiny model, its export, a gallery."""
import os
import os.path as osp

import pytest

from test_apis.search_testdata import write_gallery, write_model

try:  # the optional extras .[deploy] and .[tests]; `make test` installs them
    import fastapi  # noqa: F401
    import httpx  # noqa: F401
    import onnxruntime  # noqa: F401
except ImportError:
    if os.environ.get('CI'):
        raise
    collect_ignore_glob = ['test_*.py']


def _train_a_little(model: dict, steps: int = 5) -> None:
    """A few AdamW steps of the MDRL losses on random data (in place).

    The exported model is then a trained one: weights moved away from their
    initialisation (LayerNorms, LTE, DLL, projections), as after training.
    """
    import torch
    from mmengine import Config
    from mmengine.structures import BaseDataElement

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    cfg = Config.fromfile(model['config'])
    net = MODELS.build(cfg.model)
    net.load_state_dict(torch.load(model['checkpoint'])['state_dict'])
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    texts = ['a man in a red shirt', 'a woman with a blue bag',
             'black pants and white shoes', 'she has long hair and a hat']
    for _ in range(steps):
        inputs = dict(images=torch.randn(4, 3, 32, 16, generator=gen),
                      **net.data_preprocessor.tokenize(texts))
        samples = [BaseDataElement(gt_label=i % 4) for i in range(4)]
        loss = sum(net.loss(inputs, samples).values())
        optim.zero_grad()
        loss.backward()
        optim.step()
    torch.save({'meta': {}, 'state_dict': net.state_dict()},
               model['checkpoint'])


def _export(folder: str, model: dict) -> str:
    from mdrl_plugin.export import export_onnx
    out = osp.join(folder, 'export')
    export_onnx(model['config'], model['checkpoint'], out)
    return out


@pytest.fixture(scope='session')
def deploy_model(tiny_bert_dir, tmp_path_factory) -> dict:
    """The tiny MDRL (global features), trained a few steps, and its export."""
    folder = str(tmp_path_factory.mktemp('deploy_model'))
    model = write_model(folder, tiny_bert_dir, seed=0)
    _train_a_little(model)
    model['export'] = _export(folder, model)
    return model


@pytest.fixture(scope='session')
def deploy_model_local(tiny_bert_dir, tmp_path_factory) -> dict:
    """The tiny MDRL with global+local retrieval, trained a little, exported."""
    from mmengine import Config

    from mdrl_test_utils import tiny_mdrl_cfg
    folder = str(tmp_path_factory.mktemp('deploy_model_local'))
    model = write_model(folder, tiny_bert_dir, seed=2)
    cfg = Config.fromfile(model['config'])
    cfg.model = tiny_mdrl_cfg(tiny_bert_dir,
                              retrieval_features='global+local')
    cfg.dump(model['config'])
    _train_a_little(model)
    model['export'] = _export(folder, model)
    return model


@pytest.fixture(scope='session')
def deploy_gallery(tmp_path_factory) -> str:
    """A folder of 10 images in two sub-folders (read-only for the tests)."""
    folder = str(tmp_path_factory.mktemp('deploy_gallery') / 'gallery')
    write_gallery(folder)
    return folder

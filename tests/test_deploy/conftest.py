"""Fixtures of the deployment tests: a tiny model, its export, a gallery."""
import os.path as osp

import pytest

from test_apis.search_testdata import write_gallery, write_model

pytest.importorskip('onnxruntime')


def _export(folder: str, model: dict) -> str:
    from mdrl_plugin.deploy import export_onnx
    out = osp.join(folder, 'export')
    export_onnx(model['config'], model['checkpoint'], out)
    return out


@pytest.fixture(scope='session')
def deploy_model(tiny_bert_dir, tmp_path_factory) -> dict:
    """Config + checkpoint of the tiny MDRL (global features) and its export."""
    folder = str(tmp_path_factory.mktemp('deploy_model'))
    model = write_model(folder, tiny_bert_dir, seed=0)
    model['export'] = _export(folder, model)
    return model


@pytest.fixture(scope='session')
def deploy_model_local(tiny_bert_dir, tmp_path_factory) -> dict:
    """The tiny MDRL retrieving with global+local features, and its export."""
    from mdrl_test_utils import tiny_mdrl_cfg
    from mmengine import Config
    folder = str(tmp_path_factory.mktemp('deploy_model_local'))
    model = write_model(folder, tiny_bert_dir, seed=2)
    cfg = Config.fromfile(model['config'])
    cfg.model = tiny_mdrl_cfg(tiny_bert_dir,
                              retrieval_features='global+local')
    cfg.dump(model['config'])
    model['export'] = _export(folder, model)
    return model


@pytest.fixture(scope='session')
def deploy_gallery(tmp_path_factory) -> str:
    """A folder of 10 images in two sub-folders (read-only for the tests)."""
    folder = str(tmp_path_factory.mktemp('deploy_gallery') / 'gallery')
    write_gallery(folder)
    return folder

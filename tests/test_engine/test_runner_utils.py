"""Config helpers of the tools: config loading, work dir, --resume."""
import os

import pytest
import torch
from mmengine.config import Config

from mdrl_plugin.engine import (apply_resume, default_work_dir, load_config)


def test_load_config_errors(tmp_path):
    missing = str(tmp_path / 'nope.py')
    with pytest.raises(FileNotFoundError) as info:
        load_config(missing)
    assert str(info.value) == (
        f"Config file '{missing}' does not exist or is not a file.")
    txt = tmp_path / 'cfg.txt'
    txt.write_text('a = 1\n')
    with pytest.raises(ValueError) as info:
        load_config(str(txt))
    assert str(info.value) == (
        f"Config file '{txt}' must be a .py, .json or .yaml MMEngine config.")
    good = tmp_path / 'good.py'
    good.write_text('a = 1\n')
    assert load_config(str(good)).a == 1


def test_default_work_dir():
    assert default_work_dir('configs/mdrl/mdrl_vit_cuhk.py') == os.path.join(
        './work_dirs', 'mdrl_vit_cuhk')


def _ckpt(path):
    torch.save({'meta': {}}, str(path))
    return str(path)


def test_apply_resume(tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    cfg = Config(dict(work_dir=str(work), load_from='pretrained.pth',
                      resume=False))
    apply_resume(cfg, None)
    assert (cfg.resume, cfg.load_from) == (False, 'pretrained.pth')
    # nothing to resume yet: start afresh, keep the initialisation
    apply_resume(cfg, 'auto')
    assert (cfg.resume, cfg.load_from) == (False, 'pretrained.pth')
    ckpt = _ckpt(work / 'iter_4.pth')
    (work / 'last_checkpoint').write_text(ckpt)
    apply_resume(cfg, 'auto')
    assert (cfg.resume, cfg.load_from) == (True, ckpt)
    other = _ckpt(tmp_path / 'other.pth')
    apply_resume(cfg, other)
    assert (cfg.resume, cfg.load_from) == (True, other)
    missing = str(tmp_path / 'missing.pth')
    with pytest.raises(FileNotFoundError) as info:
        apply_resume(cfg, missing)
    assert str(info.value) == (
        f"--resume: checkpoint file '{missing}' does not exist.")

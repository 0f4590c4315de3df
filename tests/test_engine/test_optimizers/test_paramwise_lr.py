"""Per-module learning rates on MDRL: ``paramwise_cfg.custom_keys`` through
TrainableParamsOptimWrapperConstructor, on a tiny model of the demo config."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

from mdrl_plugin.registry import MODELS, PARAM_SCHEDULERS

from mdrl_test_utils import REPO_ROOT, shrink_config

#: Name prefixes of MDRL's modules that the pretrained encoders do not bring
#: (docs/training.md, "Per-module learning rates"): LTE and the projections
#: to the shared width, DLL of each modality, CIM, the identity classifiers.
NEW_MODULES = ('text_encoder.lte', 'text_encoder.proj', 'image_encoder.proj',
               'image_local', 'text_local', 'cross_modal', 'classifier')
NO_DECAY = ('cross_modal.cls_token', 'cross_modal.modality_embed')


@pytest.fixture
def demo(tiny_bert_dir, tmp_path):
    """(config, model) of configs/mdrl_demo.py at tiny size."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'mdrl_demo.py'))
    shrink_config(cfg, tiny_bert_dir, str(tmp_path / 'data'))
    custom_keys = {key: dict(lr_mult=5.0, decay_mult=1.0)
                   for key in NEW_MODULES}
    # longer keys win: the CIM's tokens at 5x without weight decay
    custom_keys.update({key: dict(lr_mult=5.0, decay_mult=0.0)
                        for key in NO_DECAY})
    cfg.optim_wrapper.paramwise_cfg = dict(custom_keys=custom_keys)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    return cfg, model, wrapper


def groups_by_name(model, wrapper):
    """{parameter name: [its groups]} over the real groups (MMEngine appends a
    parameter-less ``base_param_settings`` group for logging)."""
    names = {id(p): n for n, p in model.named_parameters()}
    found = {}
    for group in wrapper.param_groups:
        if group is getattr(wrapper, 'base_param_settings', None):
            continue
        for p in group['params']:
            found.setdefault(names[id(p)], []).append(group)
    return found


def test_demo_optimizer_settings_are_what_the_test_assumes(demo):
    cfg, _, wrapper = demo
    assert cfg.optim_wrapper.constructor == \
        'TrainableParamsOptimWrapperConstructor'
    assert cfg.optim_wrapper.optimizer.lr == 3e-4
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)


def test_each_group_has_the_learning_rate_and_decay_of_its_module(demo):
    _, model, wrapper = demo
    found = groups_by_name(model, wrapper)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # frozen BERT is in no group; every trainable parameter in exactly one
    assert frozen and all(n.startswith('text_encoder.bert.') for n in frozen)
    assert not frozen & set(found)
    assert set(found) == trainable
    assert all(len(groups) == 1 for groups in found.values())

    base_lr, base_wd = 3e-4, 0.05
    seen = set()
    for name, (group, ) in found.items():
        if name.startswith(NO_DECAY):
            expected, kind = (base_lr * 5.0, base_wd * 0.0), 'new, no decay'
        elif any(key in name for key in NEW_MODULES):
            expected, kind = (base_lr * 5.0, base_wd * 1.0), 'new'
        else:
            # only the image encoder's backbone keeps the base rate
            assert name.startswith('image_encoder.vit.'), name
            expected, kind = (base_lr, base_wd), 'encoder'
        assert (group['lr'], group['weight_decay']) == expected, name
        seen.add(kind)
    assert seen == {'new, no decay', 'new', 'encoder'}
    assert found['cross_modal.cls_token'][0]['lr'] == pytest.approx(1.5e-3)
    assert found['cross_modal.cls_token'][0]['weight_decay'] == 0.0
    assert found['image_encoder.vit.cls_token'][0]['lr'] == 3e-4
    # every module of MDRL that is not the image backbone or BERT is "new"
    tops = {'.'.join(n.split('.')[:2]) if n.startswith(('text_encoder',
                                                         'image_encoder'))
            else n.split('.')[0] for n in trainable}
    assert tops == {'image_encoder.vit', 'image_encoder.proj',
                    'text_encoder.lte', 'text_encoder.proj', 'image_local',
                    'text_local', 'cross_modal', 'image_classifier',
                    'local_classifier', 'cim_classifier'}


def test_schedulers_scale_every_group_and_keep_the_ratio(demo):
    _, model, wrapper = demo
    found = groups_by_name(model, wrapper)
    with DefaultScope.overwrite_default_scope('mdrl_plugin'):
        PARAM_SCHEDULERS.build(dict(type='LinearLR', optimizer=wrapper,
                                    start_factor=0.1, by_epoch=False,
                                    begin=0, end=10))
    cim = found['cross_modal.encoder.layers.0.self_attn.in_proj_weight'][0]
    vit = found['image_encoder.vit.cls_token'][0]
    assert cim['lr'] == pytest.approx(1.5e-4, rel=1e-12)
    assert vit['lr'] == pytest.approx(3e-5, rel=1e-12)


def test_one_step_moves_new_modules_five_times_as_far(demo):
    _, model, wrapper = demo
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    # a gradient of the same sign everywhere: AdamW's first step moves each
    # weight by lr (times g / (|g| + eps) ~ 1) plus the decoupled decay
    loss = sum(p.sum() for p in params.values() if p.requires_grad)
    wrapper.update_params(loss)
    for name, lr in (('cross_modal.cls_token', 1.5e-3),
                     ('image_classifier.fc.weight', 1.5e-3),
                     ('text_encoder.lte.layers.0.norm1.weight', 1.5e-3),
                     ('image_encoder.vit.cls_token', 3e-4)):
        wd = 0.0 if name.startswith(NO_DECAY) else 0.05
        expected = before[name] * (1 - lr * wd) - lr
        torch.testing.assert_close(params[name].detach(), expected,
                                   rtol=0, atol=lr * 1e-3)
    for name, p in params.items():
        if not p.requires_grad:
            assert torch.equal(p, before[name]), name

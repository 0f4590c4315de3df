"""Activation checkpointing (``with_cp``): it happens where it is asked for,
only in training with gradients, and changes neither losses nor gradients.

Every check counts the calls of ``torch.utils.checkpoint.checkpoint`` (timm,
the plugin and mmpretrain all call it through the module attribute), so a
``with_cp`` that is silently ignored fails here.
"""
import pytest
import torch
import torch.utils.checkpoint

from mdrl_plugin.registry import MODELS

from _with_cp_dist_worker import loss_and_grads, model_cfg, run_worker, train_batch  # noqa: I100
from mdrl_test_utils import run_ranks


@pytest.fixture
def cp_calls(monkeypatch) -> list:
    """Functions passed to ``torch.utils.checkpoint.checkpoint`` (recorded,
    then run by the real one)."""
    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(function, *args, **kwargs):
        calls.append((function, kwargs.get('use_reentrant')))
        return real(function, *args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    return calls


def _grads(module: torch.nn.Module) -> dict:
    return {name: p.grad.clone() for name, p in module.named_parameters()
            if p.grad is not None}


def _assert_same_grads(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------ each module
def _vit(with_cp):
    return dict(type='TimmVisionTransformer', arch='vit_base_patch16_224',
                img_size=(32, 16), patch_size=8, drop_path_rate=0.2,
                arch_kwargs=dict(embed_dim=32, depth=3, num_heads=2,
                                 proj_drop_rate=0.1),
                with_cp=with_cp)


def _run(module, *inputs):
    out = module(*inputs)
    outs = out if isinstance(out, tuple) else (out, )
    return sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum()
               for o in outs if o.is_floating_point())


MODULES = {
    # name: (config with with_cp, inputs, number of checkpointed layers)
    'vit': (_vit, lambda: (torch.randn(2, 3, 32, 16), ), 3),
    'dll': (lambda cp: dict(type='DisorderedLocalLearning', embed_dims=16,
                            num_groups=2, num_layers=2, num_heads=2,
                            dropout=0.1, with_cp=cp),
            lambda: (torch.randn(2, 16), torch.randn(2, 6, 16),
                     torch.tensor([[False] * 6, [False] * 4 + [True] * 2])),
            2),
    'cim': (lambda cp: dict(type='CrossModalInteraction', embed_dims=16,
                            num_layers=3, num_heads=2, dropout=0.1,
                            with_cp=cp),
            lambda: (torch.randn(2, 4, 16), torch.randn(2, 5, 16),
                     torch.tensor([[False] * 5, [False] * 3 + [True] * 2])),
            3),
}


@pytest.mark.parametrize('name', sorted(MODULES))
def test_each_block_is_checkpointed_in_training_only(name, cp_calls):
    make_cfg, make_inputs, num_layers = MODULES[name]
    torch.manual_seed(0)
    plain = MODELS.build(make_cfg(False)).train()
    torch.manual_seed(0)
    module = MODELS.build(make_cfg(True)).train()
    assert module.with_cp is True and plain.with_cp is False
    inputs = [x.requires_grad_(True) if x.is_floating_point() else x
              for x in make_inputs()]
    torch.manual_seed(1)  # dropout, drop path and DLL's shuffle on
    ref = _run(plain, *inputs)
    ref.backward()
    assert cp_calls == []
    ref_grads, ref_input_grads = _grads(plain), [x.grad for x in inputs
                                                 if x.requires_grad]
    for x in inputs:
        x.grad = None
    torch.manual_seed(1)
    loss = _run(module, *inputs)
    assert len(cp_calls) == num_layers
    assert all(reentrant is False for _, reentrant in cp_calls)
    loss.backward()
    assert len(cp_calls) == num_layers  # recomputed, not checkpointed again
    assert torch.equal(loss, ref)
    _assert_same_grads(_grads(module), ref_grads)
    for x, g in zip([x for x in inputs if x.requires_grad], ref_input_grads):
        assert torch.equal(x.grad, g)
    cp_calls.clear()
    with torch.no_grad():  # training mode, no graph: nothing to save
        module(*inputs)
    module.eval()
    module(*inputs)  # eval mode, with grad
    assert cp_calls == []


def test_text_encoder_checkpoints_the_lte_and_never_the_frozen_bert(
        tiny_bert_dir, cp_calls):
    cfg = dict(type='BertTextEncoder', pretrained=tiny_bert_dir,
               num_lte_layers=2, num_heads=2, dropout=0.1, out_channels=16)
    torch.manual_seed(0)
    plain = MODELS.build(cfg).train()
    torch.manual_seed(0)
    enc = MODELS.build(dict(cfg, with_cp=True)).train()
    grad_in_bert = []
    enc.bert.register_forward_hook(
        lambda *_: grad_in_bert.append(torch.is_grad_enabled()))
    ids = torch.tensor([[2, 8, 11, 15, 21, 3], [2, 9, 3, 0, 0, 0]])
    mask = (ids != 0).long()
    torch.manual_seed(1)
    ref = _run(plain, ids, mask)
    ref.backward()
    assert cp_calls == []
    torch.manual_seed(1)
    loss = _run(enc, ids, mask)
    loss.backward()
    assert [fn for fn, _ in cp_calls] == list(enc.lte.layers)  # BERT: none
    assert grad_in_bert and not any(grad_in_bert)  # BERT under no_grad
    assert torch.equal(loss, ref)
    _assert_same_grads(_grads(enc), _grads(plain))
    assert not any(name.startswith('bert.') for name in _grads(enc))
    cp_calls.clear()
    enc.eval()
    enc(ids, mask)
    assert cp_calls == []


# ------------------------------------------------------------ BackboneAdapter
def _adapter(**kwargs):
    torch.manual_seed(0)
    return MODELS.build(dict(type='BackboneAdapter', probe_size=(64, 32),
                             **kwargs)).train()


def test_adapter_switches_timm_checkpointing_on_in_training(cp_calls):
    plain, enc = (_adapter(timm_model='resnet18', with_cp=cp)
                  for cp in (False, True))
    images = torch.randn(2, 3, 64, 32)
    ref = _run(plain, images)
    ref.backward()
    assert cp_calls == []
    loss = _run(enc, images)
    loss.backward()
    assert len(cp_calls) == 8  # resnet18: one call per basic block
    assert torch.equal(loss, ref)
    _assert_same_grads(_grads(enc), _grads(plain))
    cp_calls.clear()
    enc.eval()
    enc(images)
    assert cp_calls == [] and enc.backbone.grad_checkpointing is False


def test_adapter_passes_with_cp_to_a_backbone_that_takes_it(cp_calls):
    vit = dict(type='TimmVisionTransformer', img_size=(64, 32), patch_size=16,
               arch_kwargs=dict(embed_dim=32, depth=2, num_heads=2))
    enc = _adapter(backbone=vit, with_cp=True)
    assert enc.backbone.with_cp is True
    _run(enc, torch.randn(2, 3, 64, 32)).backward()
    assert len(cp_calls) == 2
    assert _adapter(backbone=vit).backbone.with_cp is False


def test_adapter_refuses_a_timm_model_without_checkpointing():
    with pytest.raises(ValueError) as err:
        _adapter(timm_model='cspresnet50', with_cp=True)
    assert str(err.value).startswith(
        "BackboneAdapter(with_cp=True): timm 'cspresnet50' does not support "
        'gradient checkpointing')


def test_adapter_with_mmpretrain_backbones(cp_calls):
    pytest.importorskip('mmpretrain')
    enc = _adapter(backbone=dict(type='mmpretrain.ResNet', depth=18),
                   with_cp=True)
    assert enc.backbone.with_cp is True
    _run(enc, torch.randn(2, 3, 64, 32)).backward()
    assert len(cp_calls) == 8  # mmpretrain's own checkpoint, one per block
    vit = dict(type='mmpretrain.VisionTransformer',
               arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                         feedforward_channels=64),
               img_size=(64, 32), patch_size=16, out_type='raw')
    with pytest.raises(ValueError, match=(
            r'BackboneAdapter\(with_cp=True\): the backbone '
            r'mmpretrain.VisionTransformer takes no `with_cp` argument')):
        _adapter(backbone=vit, with_cp=True)


# ------------------------------------------------------------ the whole MDRL
#: checkpointed calls of one tiny MDRL step: ViT blocks, LTE layers, the two
#: DLL encoders' layers, CIM layers
NUM_CP = 2 + 2 + 2 * 2 + 2


@pytest.mark.parametrize('dropout', [0.0, 0.1])
def test_mdrl_losses_and_gradients_are_bit_equal(tiny_bert_dir, cp_calls,
                                                 dropout):
    torch.manual_seed(0)
    plain = MODELS.build(model_cfg(tiny_bert_dir, False, dropout))
    torch.manual_seed(0)
    model = MODELS.build(model_cfg(tiny_bert_dir, True, dropout))
    data = train_batch(model)
    ref_losses, ref_grads = loss_and_grads(plain, data, seed=5)
    assert cp_calls == []
    losses, grads = loss_and_grads(model, data, seed=5)
    assert len(cp_calls) == NUM_CP
    assert losses.keys() == ref_losses.keys() == {
        'loss_id_global', 'loss_id_local', 'loss_id_cim', 'loss_match_global',
        'loss_match_local'}
    for key in losses:  # fp32 on CPU: the same operations, the same bits
        assert torch.equal(losses[key], ref_losses[key]), key
    _assert_same_grads(grads, ref_grads)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == trainable
    if dropout:  # the dropout masks matter, so equality is not vacuous
        other, _ = loss_and_grads(model, data, seed=6)
        assert not torch.equal(other['loss_id_cim'], losses['loss_id_cim'])


def test_with_cp_keys_of_the_tiny_config_reach_every_stack(tiny_bert_dir):
    model = MODELS.build(model_cfg(tiny_bert_dir, True, 0.0))
    assert [m.with_cp for m in (model.image_encoder, model.text_encoder,
                                model.image_local, model.text_local,
                                model.cross_modal)] == [True] * 5


@pytest.fixture(scope='module')
def two_rank_results(tiny_bert_dir, tmp_path_factory) -> list:
    """One DDP step with and without with_cp on 2 gloo processes."""
    tmp = tmp_path_factory.mktemp('with_cp_ddp')
    return run_ranks(run_worker, tmp, tiny_bert_dir)


def test_ddp_gradients_are_bit_equal_on_two_gloo_ranks(two_rank_results):
    for result in two_rank_results:
        assert result['cp_calls'] == [0, NUM_CP]
        plain, cp = result['plain'], result['with_cp']
        assert plain['losses'].keys() == cp['losses'].keys()
        for key in plain['losses']:
            assert torch.equal(plain['losses'][key], cp['losses'][key]), key
        _assert_same_grads(cp['grads'], plain['grads'])
    # DDP averaged the gradients: the same on both ranks, which saw different
    # halves of the batch (their losses differ)
    r0, r1 = two_rank_results
    _assert_same_grads(r0['with_cp']['grads'], r1['with_cp']['grads'])
    assert not torch.equal(r0['plain']['losses']['loss_match_global'],
                           r1['plain']['losses']['loss_match_global'])

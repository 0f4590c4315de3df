import pytest
import torch

from mdrl_plugin.registry import MODELS


def build(bert_dir, **kwargs):
    cfg = dict(type='BertTextEncoder', pretrained=bert_dir, num_lte_layers=1,
               num_heads=2, dropout=0.0)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def test_frozen_bert_has_no_grad_and_stays_in_eval(tiny_bert_dir):
    enc = build(tiny_bert_dir)
    enc.train()
    assert not enc.bert.training  # dropout off
    assert enc.lte.training
    assert all(not p.requires_grad for p in enc.bert.parameters())
    ids = torch.tensor([[2, 8, 15, 3, 0]])
    mask = (ids != 0).long()
    g, tokens, pad = enc(ids, mask)
    (g.sum() + tokens.sum()).backward()
    assert all(p.grad is None for p in enc.bert.parameters())
    assert all(p.grad is not None for p in enc.lte.parameters())


def test_unfrozen_bert_learns(tiny_bert_dir):
    enc = build(tiny_bert_dir, frozen=False)
    enc.train()
    assert enc.bert.training
    ids = torch.tensor([[2, 8, 15, 3]])
    g, _, _ = enc(ids, torch.ones_like(ids))
    g.sum().backward()
    assert enc.bert.embeddings.word_embeddings.weight.grad is not None


def test_shapes_and_padding_mask(tiny_bert_dir):
    enc = build(tiny_bert_dir, out_channels=8)
    ids = torch.tensor([[2, 8, 15, 3, 0, 0], [2, 9, 10, 11, 12, 3]])
    g, tokens, pad = enc(ids, (ids != 0).long())
    assert g.shape == (2, 8) and tokens.shape == (2, 5, 8)
    assert pad.tolist() == [[False, False, False, True, True],
                            [False, False, False, False, False]]


def test_features_do_not_depend_on_amount_of_padding(tiny_bert_dir):
    enc = build(tiny_bert_dir).eval()
    short = torch.tensor([[2, 8, 15, 3]])
    long = torch.tensor([[2, 8, 15, 3, 0, 0, 0, 0]])
    g1, t1, _ = enc(short, torch.ones_like(short))
    g2, t2, _ = enc(long, (long != 0).long())
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t1, t2[:, :3], atol=1e-5, rtol=1e-5)


def test_init_weights_keeps_pretrained_bert(tiny_bert_dir):
    enc = build(tiny_bert_dir)
    before = enc.bert.embeddings.word_embeddings.weight.clone()
    enc.init_weights()
    assert torch.equal(before, enc.bert.embeddings.word_embeddings.weight)


def test_missing_bert_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match='BERT folder .*missing.* does not exist'):
        MODELS.build(dict(type='BertTextEncoder', pretrained=str(tmp_path / 'missing')))


def test_built_from_config_dict():
    enc = MODELS.build(dict(
        type='BertTextEncoder', bert_config=dict(
            vocab_size=30, hidden_size=16, num_hidden_layers=1,
            num_attention_heads=2, intermediate_size=32), num_lte_layers=0))
    assert enc.lte is None
    g, tokens, pad = enc(torch.tensor([[2, 5, 3]]), torch.ones(1, 3, dtype=torch.long))
    assert g.shape == (1, 16) and tokens.shape == (1, 2, 16)
    with pytest.raises(ValueError, match='exactly one of'):
        MODELS.build(dict(type='BertTextEncoder'))


def test_frozen_bert_builds_no_autograd_graph(tiny_bert_dir):
    enc = build(tiny_bert_dir).train()
    seen = []
    enc.bert.register_forward_hook(
        lambda module, args, out: seen.append(out.last_hidden_state.requires_grad))
    ids = torch.tensor([[2, 8, 15, 3]])
    g, _, _ = enc(ids, torch.ones_like(ids))
    assert seen == [False]  # BERT ran under no_grad
    assert g.requires_grad  # the LTE after it learns

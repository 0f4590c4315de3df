import numpy as np
import pytest
import torch

from mdrl_plugin.models import WeightsNotFoundError
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



def test_project_first_runs_the_lte_at_the_projected_width(tiny_bert_dir):
    enc = build(tiny_bert_dir, out_channels=8, project_first=True)
    assert enc.lte.layers[0].linear1.in_features == 8
    assert enc.proj.weight.shape == (8, enc.bert.config.hidden_size)
    enc.train()
    ids = torch.tensor([[2, 8, 15, 3, 0], [2, 9, 10, 11, 3]])
    mask = (ids != 0).long()
    g, tokens, pad = enc(ids, mask)
    assert g.shape == (2, 8) and tokens.shape == (2, 4, 8)
    # the same computation by hand: projection, then the LTE
    from mdrl_plugin.models.utils import masked_transformer
    hidden = enc.proj(enc.frozen_bert_tokens(ids, mask))
    expected = masked_transformer(enc.lte, hidden, mask == 0)
    torch.testing.assert_close(g, expected[:, 0])
    g.sum().backward()
    assert enc.proj.weight.grad is not None
    with pytest.raises(ValueError, match='project_first=True.*out_channels'):
        build(tiny_bert_dir, project_first=True)

def test_features_do_not_depend_on_amount_of_padding(tiny_bert_dir):
    enc = build(tiny_bert_dir).eval()
    short = torch.tensor([[2, 8, 15, 3]])
    long = torch.tensor([[2, 8, 15, 3, 0, 0, 0, 0]])
    g1, t1, _ = enc(short, torch.ones_like(short))
    g2, t2, _ = enc(long, (long != 0).long())
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t1, t2[:, :3], atol=1e-5, rtol=1e-5)


def _padded(seqs, width=None):
    width = width or max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    return ids, (ids != 0).long()


SEQS = [[2, 8, 15, 3], [2, 9, 10, 11, 12, 13, 14, 3], [2, 5, 3],
        [2] + list(range(5, 40)) + [3], [2, 20, 21, 22, 23, 3]]


def test_frozen_bert_rows_are_bitwise_independent_of_the_batch(tiny_bert_dir):
    """The property the exact cache rests on (canonical shape)."""
    enc = build(tiny_bert_dir)
    alone = [enc.frozen_bert_tokens(*_padded([s]))[0] for s in SEQS]
    for batch in ([0, 1, 2, 3, 4], [4, 2], [1, 3], [2, 0, 1]):
        for width in (None, 64):  # padded to the longest caption, or further
            out = enc.frozen_bert_tokens(*_padded([SEQS[i] for i in batch], width))
            for row, i in enumerate(batch):
                n = len(SEQS[i])
                assert torch.equal(out[row, :n], alone[i][:n])
                assert not out[row, n:].any()  # zeros at padding
    # without the canonical shape the rounding depends on the padded length
    # (this is why the encoder pads to a canonical length before BERT)
    plain = [enc.bert(*_padded([SEQS[3]], w)).last_hidden_state[0, :len(SEQS[3])]
             for w in (len(SEQS[3]), 64)]
    torch.testing.assert_close(plain[0], alone[3][:len(SEQS[3])])



@pytest.mark.parametrize('multiple', [8, 64])
def test_canonical_shape_is_the_next_multiple_of_pad_to_multiple_of(
        tiny_bert_dir, multiple):
    enc = build(tiny_bert_dir, pad_to_multiple_of=multiple)
    out = enc.frozen_bert_tokens(*_padded(SEQS))
    for row, seq in enumerate(SEQS):
        n = len(seq)
        width = min(64, -(-n // multiple) * multiple)  # 8, 8, 8, 40, 8 or 64
        with torch.no_grad():
            direct = enc.bert(*_padded([seq], width)).last_hidden_state[0, :n]
        assert torch.equal(out[row, :n], direct)
    with pytest.raises(ValueError, match='pad_to_multiple_of must be >= 1'):
        build(tiny_bert_dir, pad_to_multiple_of=0)

def test_longer_inputs_than_max_length_are_a_clear_error(tiny_bert_dir):
    enc = build(tiny_bert_dir, max_length=8)
    with pytest.raises(ValueError, match='captions of 9 tokens but its max_length '
                       'is 8: set model.text_encoder.max_length'):
        enc(*_padded([list(range(2, 11))]))
    with pytest.raises(ValueError, match='exceeds the BERT.s max_position_embeddings=128'):
        build(tiny_bert_dir, max_length=129)


class _DictCache:
    """A cache serving given rows for given sequences (and recording queries)."""

    def __init__(self, table, mode=None, reason=None):
        self.table, self.queries = table, []
        self.mode, self.dtype, self.reason = mode or {}, torch.float32, reason

    def mismatch(self, device):
        return self.reason

    def gather(self, seqs):
        self.queries.append([list(s) for s in seqs])
        found = np.array([tuple(s) in self.table for s in seqs], dtype=bool)
        rows = [self.table[tuple(s)] for s in seqs if tuple(s) in self.table]
        return found, (np.concatenate(rows) if rows
                       else np.zeros((0, 32), np.float32))


def test_cached_rows_are_served_and_misses_run_live(tiny_bert_dir):
    enc = build(tiny_bert_dir).eval()
    ids, mask = _padded(SEQS)
    live = enc(ids, mask)
    # serve SEQS[0] and SEQS[3] from a cache that marks its rows with 7s
    table = {tuple(SEQS[i]): np.full((len(SEQS[i]), 32), 7, np.float32)
             for i in (0, 3)}
    hidden = enc._cached_bert_tokens(ids, mask, _DictCache(table))
    assert (hidden[0, :4] == 7).all() and (hidden[3, :37] == 7).all()
    assert not hidden[0, 4:].any()
    canon = enc.frozen_bert_tokens(ids, mask)
    for i in (1, 2, 4):
        assert torch.equal(hidden[i], canon[i])
    assert enc.cache_stats == dict(hits=2, misses=3)
    # a cache holding the true rows gives exactly the live outputs
    enc.attach_text_cache(_DictCache({
        tuple(s): canon[i, :len(s)].numpy() for i, s in enumerate(SEQS)}))
    assert all(torch.equal(a, b) for a, b in zip(enc(ids, mask), live))
    assert enc.cache_stats == dict(hits=7, misses=3)
    # a left-padded row has no key: it is computed live, never looked up
    left = torch.tensor([[0, 0, 2, 8, 15, 3]])
    cache = _DictCache({(2, 8, 15, 3): np.zeros((4, 32), np.float32)})
    out = enc._cached_bert_tokens(left, (left != 0).long(), cache)
    assert cache.queries == [[]] and out[0, 2:].abs().sum() > 0


def test_only_the_cache_of_the_forwards_mode_serves(tiny_bert_dir, monkeypatch):
    """One cache per numeric mode; a forward no cache matches runs live and
    says why, once."""
    import logging

    import mdrl_plugin.models.backbones.text_encoder as module
    records = []
    monkeypatch.setattr(module, 'print_log', lambda msg, logger, level:
                        records.append((level, logger, msg)))
    enc = build(tiny_bert_dir).eval()
    ids, mask = _padded(SEQS[:2])
    live = enc(ids, mask)
    zeros = {tuple(s): np.zeros((len(s), 32), np.float32) for s in SEQS[:2]}
    off = _DictCache(zeros, dict(autocast='off'), reason='autocast=off in '
                     'the cache but torch.bfloat16 now')
    enc.attach_text_cache(off)
    for _ in range(3):
        assert all(torch.equal(a, b) for a, b in zip(enc(ids, mask), live))
    assert records == [(logging.WARNING, 'current',
                         'BertTextEncoder: frozen text cache off for this '
                         'forward (BERT runs live): autocast=off in the cache '
                         'but torch.bfloat16 now')]
    assert off.queries == [] and enc.cache_stats == dict(hits=0, misses=0)
    # a second mode's cache is kept beside the first, and the matching one serves
    bf16 = _DictCache(zeros, dict(autocast='torch.bfloat16'))
    enc.attach_text_cache(bf16)
    assert list(enc.text_caches.values()) == [off, bf16]
    assert not enc(ids, mask)[1].equal(live[1]) and len(bf16.queries) == 1
    enc.attach_text_cache(None)
    assert enc.text_caches == {}


def test_cache_needs_a_frozen_bert(tiny_bert_dir):
    enc = build(tiny_bert_dir, frozen=False)
    with pytest.raises(ValueError, match='needs a frozen BERT'):
        enc.attach_text_cache(_DictCache({}))


def test_init_weights_keeps_pretrained_bert(tiny_bert_dir):
    enc = build(tiny_bert_dir)
    before = enc.bert.embeddings.word_embeddings.weight.clone()
    enc.init_weights()
    assert torch.equal(before, enc.bert.embeddings.word_embeddings.weight)


def test_missing_bert_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"(?s)1 pretrained weight.s. missing:\n"
                       r"  - text encoder \('.*missing'\): looked in the local path .*"
                       'Put the files at the local paths'):
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

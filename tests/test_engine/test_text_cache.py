"""TextFeatureCache: memory-mapped shards keyed by token ids."""
import os

import numpy as np
import pytest
import torch

import mdrl_plugin.engine.text_cache as tc
from mdrl_plugin.engine import TextFeatureCache

SEQS = [np.array(s, np.int32) for s in
        ([2, 8, 3], [2, 8, 9, 10, 3], [2, 3], [2, 7, 7, 7, 7, 7, 3])]


def _fake_bert(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row t, position j -> (id, j, 0.5), and garbage at padding."""
    pos = torch.arange(ids.shape[1]).expand_as(ids)
    out = torch.stack([ids.float(), pos.float(), torch.full(ids.shape, 0.5)], -1)
    return torch.where(mask.bool()[..., None], out, torch.full_like(out, -99.0))


def _expected(seq):
    n = len(seq)
    return np.stack([seq, np.arange(n), np.full(n, 0.5)], 1).astype(np.float32)


def test_write_and_gather_real_tokens_only(tmp_path):
    folder = str(tmp_path / 'fp')
    assert len(TextFeatureCache(folder)) == 0  # no folder yet: empty cache
    shard = TextFeatureCache.write_shard(folder, SEQS, _fake_bert, batch_size=3)
    assert os.path.basename(shard).startswith('shard-')
    assert not [d for d in os.listdir(folder) if d.startswith('.tmp')]
    cache = TextFeatureCache(folder)
    assert len(cache) == 4
    assert cache.nbytes == sum(len(s) for s in SEQS) * 3 * 4  # no padding stored
    assert isinstance(cache.shards[0].features, np.memmap)
    query = [SEQS[3], np.array([2, 9, 3]), SEQS[0], SEQS[2]]
    found, rows = cache.gather(query)
    assert found.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(
        rows, np.concatenate([_expected(SEQS[i]) for i in (3, 0, 2)]))
    rows[:] = 0  # a copy: the files are untouched
    assert cache.gather([SEQS[0]])[1][0, 0] == 2
    assert [s.tolist() for s in cache.missing([[2, 8, 3], [2, 9, 3], [2, 9, 3]])] \
        == [[2, 9, 3]]


def test_new_sequences_go_to_a_second_shard(tmp_path):
    folder = str(tmp_path / 'fp')
    TextFeatureCache.write_shard(folder, SEQS[:2], _fake_bert)
    cache = TextFeatureCache(folder)
    missing = cache.missing([s.tolist() for s in SEQS])
    assert [m.tolist() for m in missing] == [SEQS[2].tolist(), SEQS[3].tolist()]
    TextFeatureCache.write_shard(folder, missing, _fake_bert)
    assert TextFeatureCache.write_shard(folder, [], _fake_bert) is None
    cache = TextFeatureCache(folder)
    assert len(cache.shards) == 2 and len(cache) == 4
    found, rows = cache.gather(SEQS[::-1])
    assert found.all()
    np.testing.assert_array_equal(rows, np.concatenate([_expected(s) for s in SEQS[::-1]]))


def test_hash_collisions_never_serve_another_caption(tmp_path, monkeypatch):
    monkeypatch.setattr(tc, '_seq_key', lambda seq: 42)  # every key collides
    folder = str(tmp_path / 'fp')
    TextFeatureCache.write_shard(folder, SEQS, _fake_bert)
    cache = TextFeatureCache(folder)
    found, rows = cache.gather([SEQS[1], np.array([2, 8, 9, 11, 3])])
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(rows, _expected(SEQS[1]))


def test_copies_of_a_model_share_the_cache(tmp_path):
    import copy
    TextFeatureCache.write_shard(str(tmp_path), SEQS, _fake_bert)
    cache = TextFeatureCache(str(tmp_path))
    assert copy.deepcopy(cache) is cache


@pytest.mark.parametrize('change', ['weights', 'max_length', 'tokenizer_max'])
def test_fingerprint_covers_weights_and_lengths(tiny_bert_dir, change):
    from mdrl_plugin.models.data_preprocessors.text_image import load_tokenizer
    from mdrl_plugin.registry import MODELS
    enc = MODELS.build(dict(type='BertTextEncoder', pretrained=tiny_bert_dir))
    tok = load_tokenizer(tiny_bert_dir)
    fp, parts = tc.text_cache_fingerprint(enc, tok, 16, torch.device('cpu'))
    assert tc.text_cache_fingerprint(enc, tok, 16, 'cpu')[0] == fp
    tok_max = 16
    if change == 'weights':
        with torch.no_grad():
            enc.bert.encoder.layer[0].output.dense.bias[0] += 1e-6
    elif change == 'max_length':
        enc.max_length = 32
    else:
        tok_max = 17
    assert tc.text_cache_fingerprint(enc, tok, tok_max, 'cpu')[0] != fp

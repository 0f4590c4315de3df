"""TextFeatureCache: memory-mapped shards keyed by token ids, written so that
a killed build leaves nothing behind, and fingerprinted by numeric mode."""
import os
import signal
import time

import numpy as np
import pytest
import torch

import mdrl_plugin.engine.text_cache as tc
from mdrl_plugin.engine import TextFeatureCache

from mdrl_test_utils import fork

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
    assert sorted(os.listdir(folder)) == ['meta.json', os.path.basename(shard)]
    cache = TextFeatureCache(folder)
    assert cache.mode == tc.numeric_mode('cpu') and cache.dtype == torch.float32
    assert cache.mismatch('cpu') is None
    assert len(cache) == 4
    assert cache.nbytes == sum(len(s) for s in SEQS) * 3 * 4  # no padding stored
    assert all(isinstance(a, np.memmap) for a in cache.shards[0])
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


@pytest.mark.parametrize('change', ['weights', 'max_length', 'mode'])
def test_fingerprint_covers_weights_length_and_mode(tiny_bert_dir, change):
    from mdrl_plugin.registry import MODELS
    enc = MODELS.build(dict(type='BertTextEncoder', pretrained=tiny_bert_dir))
    mode = tc.numeric_mode('cpu')
    fp, parts = tc.text_cache_fingerprint(enc, mode)
    assert parts['mode'] == mode and parts['bert_max_length'] == 64
    assert tc.text_cache_fingerprint(enc, tc.numeric_mode('cpu'))[0] == fp
    if change == 'weights':
        with torch.no_grad():
            enc.bert.encoder.layer[0].output.dense.bias[0] += 1e-6
    elif change == 'max_length':
        enc.max_length = 32
    else:
        mode = dict(mode, autocast='torch.bfloat16')
    assert tc.text_cache_fingerprint(enc, mode)[0] != fp


@pytest.fixture
def restore_precision():
    owners = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul,
              torch.backends.mkldnn)
    saved = [owner.fp32_precision for owner in owners]
    yield
    for owner, value in zip(owners, saved):
        owner.fp32_precision = value


def test_numeric_mode_covers_autocast_and_precision(restore_precision):
    """Every setting that changes BERT's numbers changes the mode (and so the
    fingerprint and whether a cache may serve a forward)."""
    base = tc.numeric_mode('cpu')
    assert base['device'] == 'cpu' and base['autocast'] == 'off'
    assert base['device_model'] == torch.backends.cpu.get_cpu_capability()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = tc.numeric_mode('cpu')
    assert {k for k in base if base[k] != amp[k]} == {'autocast'}
    assert amp['autocast'] == 'torch.bfloat16'
    torch.set_float32_matmul_precision('medium')  # oneDNN may use bf16
    medium = tc.numeric_mode('cpu')
    assert medium['backends.mkldnn.matmul.fp32_precision'] == 'bf16'
    assert medium['get_float32_matmul_precision'] == 'medium'
    torch.backends.mkldnn.matmul.fp32_precision = 'none'
    torch.backends.mkldnn.fp32_precision = 'tf32'
    assert tc.numeric_mode('cpu')['backends.mkldnn.fp32_precision'] == 'tf32'
    # a cache built in the base mode does not serve a bf16 autocast forward
    cache = TextFeatureCache.__new__(TextFeatureCache)
    cache.mode = base
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert cache.mismatch('cpu').startswith(
            'autocast=off in the cache but torch.bfloat16 now')


def test_a_folder_keeps_one_numeric_mode(tmp_path):
    folder = str(tmp_path / 'fp')
    TextFeatureCache.write_shard(folder, SEQS[:2], _fake_bert)
    with torch.autocast('cpu', dtype=torch.bfloat16), pytest.raises(
            ValueError, match='holds features of another numeric mode'):
        TextFeatureCache.write_shard(folder, SEQS[2:], _fake_bert)
    assert len(TextFeatureCache(folder)) == 2 and len(os.listdir(folder)) == 2
    half = lambda ids, mask: _fake_bert(ids, mask).half()  # noqa: E731
    TextFeatureCache.write_shard(str(tmp_path / 'half'), SEQS, half)
    cache = TextFeatureCache(str(tmp_path / 'half'))
    assert cache.dtype == torch.float16 and cache.meta['feature_dtype'] == 'float16'


@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='needs /proc')
def test_shard_files_and_folder_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    fsync, rename = os.fsync, os.rename
    monkeypatch.setattr(os, 'fsync', lambda fd: (
        events.append(('fsync', os.readlink(f'/proc/self/fd/{fd}'))), fsync(fd)))
    monkeypatch.setattr(os, 'rename', lambda a, b: (
        events.append(('rename', a, b)), rename(a, b)))
    folder = str(tmp_path / 'fp')
    final = TextFeatureCache.write_shard(folder, SEQS, _fake_bert)
    renames = [i for i, e in enumerate(events) if e[0] == 'rename']
    assert len(renames) == 1 and events[renames[0]][2] == final
    tmp = events[renames[0]][1]
    synced = {e[1] for e in events[:renames[0]]}
    assert {os.path.join(tmp, n) for n in os.listdir(final)} | {tmp} <= synced
    assert any(os.path.basename(p).startswith('.meta.json.') for p in synced)
    assert ('fsync', folder) in events[renames[0]:]


def test_a_killed_build_is_cleaned_up_by_the_next(tmp_path):
    folder, marker = str(tmp_path / 'fp'), str(tmp_path / 'started')

    def slow(ids, mask):  # the second batch never ends
        if os.path.exists(marker):
            time.sleep(600)
        open(marker, 'w').close()
        return torch.zeros(*ids.shape, 3)

    proc = fork(TextFeatureCache.write_shard, folder,
                [np.array([2, i, 3], np.int32) for i in range(10)], slow, 2)
    try:
        deadline = time.monotonic() + 600  # a hang, not a slow start
        while not os.path.exists(marker) and proc.is_alive():
            assert time.monotonic() < deadline, 'the build never started'
            time.sleep(0.1)
        time.sleep(0.5)  # in the second batch, after the first was written
    finally:
        proc.kill()
        proc.join()
    assert proc.exitcode == -signal.SIGKILL
    leftovers = os.listdir(folder)
    assert len(leftovers) == 1 and leftovers[0].startswith('.shard-')
    assert os.path.isdir(os.path.join(folder, leftovers[0]))
    # the next build removes the dead writer's temp folder and is complete
    assert len(TextFeatureCache(folder)) == 0
    final = TextFeatureCache.write_shard(folder, SEQS, _fake_bert)
    assert sorted(os.listdir(folder)) == ['meta.json', os.path.basename(final)]
    found, rows = TextFeatureCache(folder).gather(SEQS)
    assert found.all()
    np.testing.assert_array_equal(rows, np.concatenate([_expected(s) for s in SEQS]))

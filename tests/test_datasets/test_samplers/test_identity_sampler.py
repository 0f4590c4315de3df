import math
from collections import Counter

import numpy as np
import pytest

from mdrl_plugin.datasets.samplers import identity_sampler
from mdrl_plugin.registry import DATA_SAMPLERS, DATASETS


class FakeDataset:
    """Entries with a ``gt_label`` only (no ``get_gt_labels``)."""

    def __init__(self, labels):
        self.labels = list(labels)
        self.calls = 0

    def __len__(self):
        return len(self.labels)

    def get_data_info(self, idx):
        self.calls += 1
        return dict(gt_label=self.labels[idx], text='x')

    def __getitem__(self, idx):
        raise AssertionError('the sampler must not run the pipeline')


def varied_labels(num_ids=20, seed=0):
    """Identity i has 1 + (i % 7) entries, entries interleaved."""
    labels = [i for i in range(num_ids) for _ in range(1 + i % 7)]
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.permutation(labels)]


def build(labels, **kwargs):
    cfg = dict(type='IdentityBalancedSampler', dataset=FakeDataset(labels),
               batch_size=8, num_instances=2, seed=0)
    cfg.update(kwargs)
    return DATA_SAMPLERS.build(cfg)


def batches_of(sampler):
    idx = list(sampler)
    assert len(idx) == len(sampler)
    assert len(idx) % sampler.batch_size == 0
    return [idx[i:i + sampler.batch_size]
            for i in range(0, len(idx), sampler.batch_size)]


def expected_batches(labels, k, p, world_size, leftover='spread'):
    """Hand rule: pad -> ceil, drop -> floor, spread -> floor plus
    floor(sum of the fractional parts); at least one chunk per identity."""
    chunks, fracs = 0, 0.0
    for n in Counter(labels).values():
        if n <= k:
            chunks += 1
        elif leftover == 'pad':
            chunks += math.ceil(n / k)
        else:
            chunks += n // k
            fracs += (n % k) / k
    if leftover == 'spread':
        chunks += math.floor(fracs + 1e-9)
    return math.ceil(chunks / (world_size * p))


def test_chunk_rule_by_hand():
    # K=4: sizes 1..9
    sizes = np.arange(1, 10)
    rule = identity_sampler.IdentityBalancedSampler._chunk_counts
    assert rule(sizes, 4, 'pad')[0].tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 3]
    assert rule(sizes, 4, 'drop')[0].tolist() == [1, 1, 1, 1, 1, 1, 1, 2, 2]
    base, frac = rule(sizes, 4, 'spread')
    assert base.tolist() == [1, 1, 1, 1, 1, 1, 1, 2, 2]
    assert frac.tolist() == [0, 0, 0, 0, 0.25, 0.5, 0.75, 0, 0.25]
    assert rule(sizes, 4, 'pad')[1].tolist() == [0.0] * 9


@pytest.mark.parametrize('leftover', ['spread', 'pad', 'drop'])
@pytest.mark.parametrize('k, batch_size', [(2, 8), (4, 16), (3, 6)])
def test_pk_structure_and_length(k, batch_size, leftover):
    labels = varied_labels()
    sampler = build(labels, batch_size=batch_size, num_instances=k,
                    leftover=leftover)
    p = batch_size // k
    assert sampler.num_batches == expected_batches(labels, k, p, 1, leftover)
    for batch in batches_of(sampler):
        groups = [batch[i:i + k] for i in range(0, batch_size, k)]
        ids = [labels[g[0]] for g in groups]
        assert len(set(ids)) == p  # P distinct identities
        for g, ident in zip(groups, ids):
            assert all(labels[i] == ident for i in g)  # K of one identity
            # distinct samples whenever the identity has K of them
            n = labels.count(ident)
            assert len(set(g)) == min(k, n) or n % k


def test_pad_sees_every_sample_every_epoch():
    labels = varied_labels()
    sampler = build(labels, leftover='pad')
    seen = Counter(list(sampler))
    assert set(seen) == set(range(len(labels)))
    # repeats come only from padding: at most one extra chunk per identity
    # plus the top-up of the last batch
    extra = sum(seen.values()) - len(labels)
    padding = sum(math.ceil(max(n, 2) / 2) * 2 - n
                  for n in Counter(labels).values())
    assert padding <= extra <= padding + sampler.batch_size


def test_spread_epoch_is_about_one_pass():
    # identity i has 4 + (i % 5) entries: leftovers 0, 1, 2, 3, 0 with K=4
    labels = [i for i in range(40) for _ in range(4 + i % 5)]
    assert len(labels) == 8 * (4 + 5 + 6 + 7 + 8) == 240
    sampler = build(labels, batch_size=16, num_instances=4)
    # base chunks 1, 1, 1, 1, 2 -> 48; fractions 0.25+0.5+0.75 per 5 ids
    # -> 12 extra chunks: 60 chunks = 240 entries = 15 batches of 16
    assert sampler.num_chunks == 60
    assert len(sampler) == 240
    assert len(build(labels, batch_size=16, num_instances=4,
                     leftover='pad')) == 16 * 18  # 72 chunks
    assert len(build(labels, batch_size=16, num_instances=4,
                     leftover='drop')) == 16 * 12  # 48 chunks
    seen, extra = set(), Counter()
    for epoch in range(40):
        sampler.set_epoch(epoch)
        idx = list(sampler)
        assert len(idx) == 240
        if epoch < 3:
            assert len(set(idx)) >= 0.75 * len(labels)
        seen |= set(idx)
        per_id = Counter(labels[i] for i in idx)
        for ident, n in per_id.items():
            size = 4 + ident % 5
            assert n in (4 * (size // 4), 4 * (size // 4 + 1))
            extra[size] += n > 4 * (size // 4)
    assert seen == set(range(len(labels)))  # left-out entries come back
    # an identity of 5, 6, 7 entries gets its extra chunk in about 25 %,
    # 50 %, 75 % of the epochs (8 identities of each size, 40 epochs)
    for size, prob in ((5, 0.25), (6, 0.5), (7, 0.75)):
        assert abs(extra[size] / 320 - prob) < 0.08, (size, extra[size])
    assert extra[4] == extra[8] == 0


def test_drop_never_repeats_within_identities_of_k_or_more():
    labels = varied_labels()
    sampler = build(labels, leftover='drop')
    small = {i for i, n in Counter(labels).items() if n < 2}
    counts = Counter(i for i in sampler if labels[i] not in small)
    # the only repeats come from topping up the last batch
    assert sum(c - 1 for c in counts.values()) <= sampler.batch_size


def test_identity_with_one_sample_is_repeated():
    labels = [0, 1, 1, 2, 2, 3, 3, 3]
    sampler = build(labels, batch_size=4, num_instances=2)
    pairs = [b[i:i + 2] for b in batches_of(sampler) for i in (0, 2)]
    assert [0, 0] in pairs


def test_deterministic_per_seed_and_epoch():
    labels = varied_labels()
    a, b = build(labels), build(labels)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    a.set_epoch(0)
    assert list(a) == first
    assert list(build(labels, seed=1)) != first


def test_no_shuffle_is_fixed_and_ordered():
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    s = build(labels, batch_size=4, shuffle=False, seed=0)
    assert list(s) == [0, 1, 2, 3, 4, 5, 6, 7]
    s.set_epoch(3)
    assert list(s) == list(build(labels, batch_size=4, shuffle=False,
                                 seed=123))


def test_ranks_draw_disjoint_identities():
    labels = varied_labels(num_ids=40)
    world = 3
    per_rank = [build(labels, rank=r, world_size=world) for r in range(world)]
    lens = {len(s) for s in per_rank}
    assert len(lens) == 1  # same number of batches on every rank
    assert per_rank[0].num_batches == expected_batches(labels, 2, 4, world)
    for epoch in (0, 1):
        ids, seen = [], set()
        for s in per_rank:
            s.set_epoch(epoch)
            idx = list(s)
            assert len(idx) == len(s)
            ids.append({labels[i] for i in idx})
            seen.update(idx)
        for r in range(world):
            for q in range(r + 1, world):
                assert not ids[r] & ids[q]
        # about once per epoch: the uneven shares drop only a few samples
        assert len(seen) >= 0.9 * len(labels)
    # identities move between ranks from one epoch to the next
    s0 = per_rank[0]
    s0.set_epoch(0)
    e0 = {labels[i] for i in s0}
    s0.set_epoch(1)
    assert {labels[i] for i in s0} != e0


def test_rank_from_dist_info(monkeypatch):
    monkeypatch.setattr(identity_sampler, 'get_dist_info', lambda: (1, 2))
    labels = varied_labels(num_ids=40)
    s = build(labels)
    assert (s.rank, s.world_size) == (1, 2)
    assert list(s) == list(build(labels, rank=1, world_size=2))


def test_seed_none_uses_sync_random_seed(monkeypatch):
    monkeypatch.setattr(identity_sampler, 'sync_random_seed', lambda: 1234)
    s = build(varied_labels(), seed=None)
    assert s.seed == 1234
    assert list(s) == list(build(varied_labels(), seed=1234))


def test_bad_arguments():
    labels = varied_labels()
    with pytest.raises(ValueError,
                       match=r'batch_size \(6\) must be a positive multiple '
                       r'of num_instances \(4\)'):
        build(labels, batch_size=6, num_instances=4)
    with pytest.raises(ValueError, match='num_instances must be a positive'):
        build(labels, num_instances=0)
    with pytest.raises(ValueError,
                       match=r"leftover must be one of \('spread', 'pad', "
                       r"'drop'\), got 'keep'"):
        build(labels, leftover='keep')
    with pytest.raises(ValueError) as exc:
        build(labels, batch_size=32, num_instances=2, world_size=2, rank=0)
    assert str(exc.value) == (
        'IdentityBalancedSampler: 20 identities cannot fill batches of 16 '
        'distinct identities on 2 rank(s) (need at least 32); lower '
        'batch_size or raise num_instances.')
    with pytest.raises(ValueError, match='rank 2 is outside world_size 2'):
        build(labels, rank=2, world_size=2)


def test_with_real_dataset(cuhk_root):
    train = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root))
    s = DATA_SAMPLERS.build(dict(type='IdentityBalancedSampler',
                                 dataset=train, batch_size=4,
                                 num_instances=2, seed=3))
    labels = train.get_gt_labels().tolist()  # [1, 1, 0, 0, 1, 2, 2]
    assert s.num_identities == 3
    # identities of 2, 3, 2 entries, K=2: one chunk each, plus a 0.5
    # fraction for the 3-entry one -> 3 + floor(0.5) = 3 chunks; P=2 ->
    # ceil(3 / 2) = 2 batches of 4
    assert s.num_chunks == 3
    assert len(s) == 8
    for batch in batches_of(s):
        assert labels[batch[0]] == labels[batch[1]]
        assert labels[batch[2]] == labels[batch[3]]
        assert labels[batch[0]] != labels[batch[2]]
    test = DATASETS.build(dict(type='CUHKPEDES', data_root=cuhk_root,
                               split='test'))
    with pytest.raises(ValueError,
                       match=r"IdentityBalancedSampler: CUHK-PEDES \(split "
                       r"'test'\) holds evaluation entries"):
        DATA_SAMPLERS.build(dict(type='IdentityBalancedSampler',
                                 dataset=test, batch_size=4, num_instances=2))
    fake_eval = FakeDataset([0])
    fake_eval.get_data_info = lambda i: dict(pid=1, texts=['x'])
    with pytest.raises(ValueError,
                       match=r"entry 0 of FakeDataset has none \(keys: "
                       r"\['pid', 'texts'\]\)"):
        DATA_SAMPLERS.build(dict(type='IdentityBalancedSampler',
                                 dataset=fake_eval, batch_size=4,
                                 num_instances=2))

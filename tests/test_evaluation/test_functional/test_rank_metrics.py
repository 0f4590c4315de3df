"""Tests of mdrl_plugin.evaluation.functional (rank_metrics*)."""
import warnings

import pytest
import torch

from mdrl_plugin.evaluation.functional import rank_metrics, rank_metrics_from_features, retrieval


@pytest.fixture(autouse=True, params=['dense', 'sparse'])
def search_path(request, monkeypatch):
    """Run every test with both match-rank searches.

    ``dense``: a batched binary search of every similarity entry;
    ``sparse``: only the entries reaching the row's lowest match score
    (float32 input on the CPU only; others fall back to dense).
    """
    monkeypatch.setattr(retrieval, 'SPARSE_MAX_FRACTION',
                        1.0 if request.param == 'sparse' else 0.0)
    return request.param


def reference_metrics(sim, query_pids, gallery_pids, topk=(1, 5, 10)):
    """Straightforward full-sort definition, pessimistic ties.

    Orders every row by (descending similarity, non-match before match,
    gallery index) with three stable sorts, then reads the metrics off the
    positions of the matches. Queries without a match are skipped.
    """
    sums = {f'R{k}': 0.0 for k in topk}
    sums.update(mAP=0.0, mINP=0.0)
    valid = 0
    for row, pid in zip(sim.double(), query_pids.tolist()):
        is_match = (gallery_pids == pid).long()
        order = torch.arange(row.numel())
        order = order[torch.sort(is_match[order], stable=True).indices]
        order = order[torch.sort(row[order], descending=True,
                                 stable=True).indices]
        ranks = (torch.nonzero(is_match[order])[:, 0] + 1).double()
        if ranks.numel() == 0:
            continue
        valid += 1
        for k in topk:
            sums[f'R{k}'] += float(ranks[0] <= k)
        hits = torch.arange(1, ranks.numel() + 1, dtype=torch.float64)
        sums['mAP'] += (hits / ranks).mean().item()
        sums['mINP'] += ranks.numel() / ranks[-1].item()
    return {key: val * 100.0 / valid for key, val in sums.items()}


def assert_close(result, expected, tol=1e-9):
    assert set(result) == set(expected)
    for key in expected:
        assert result[key] == pytest.approx(expected[key], abs=tol), key


# ---------------------------------------------------------------- hand cases
def test_one_match_per_query():
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1]]).repeat(3, 1)
    gallery_pids = torch.tensor([10, 20, 30, 40])
    query_pids = torch.tensor([20, 40, 10])
    # match ranks: 2, 4, 1
    out = rank_metrics(sim, query_pids, gallery_pids, topk=(1, 3))
    assert list(out) == ['R1', 'R3', 'mAP', 'mINP']
    assert_close(out, {
        'R1': 100 / 3,
        'R3': 200 / 3,
        'mAP': (1 / 2 + 1 / 4 + 1) / 3 * 100,
        'mINP': (1 / 2 + 1 / 4 + 1) / 3 * 100,
    })
    assert all(isinstance(v, float) for v in out.values())


def test_several_matches_per_query():
    gallery_pids = torch.tensor([1, 2, 1, 3, 1, 2])
    row = torch.tensor([0.95, 0.9, 0.8, 0.7, 0.3, 0.5])
    # order: g0(p1) g1(p2) g2(p1) g3(p3) g5(p2) g4(p1)
    # pid 1 matches at ranks 1, 3, 6; pid 2 at ranks 2, 5
    out = rank_metrics(row.repeat(2, 1), torch.tensor([1, 2]), gallery_pids,
                       topk=(1, 2, 5))
    ap1 = (1 / 1 + 2 / 3 + 3 / 6) / 3
    ap2 = (1 / 2 + 2 / 5) / 2
    assert_close(out, {
        'R1': 50.0,
        'R2': 100.0,
        'R5': 100.0,
        'mAP': (ap1 + ap2) / 2 * 100,
        'mINP': (3 / 6 + 2 / 5) / 2 * 100,
    })


def test_default_topk_keys():
    out = rank_metrics(
        torch.rand(4, 20), torch.tensor([0, 1, 2, 3]), torch.arange(20) % 4)
    assert list(out) == ['R1', 'R5', 'R10', 'mAP', 'mINP']


def test_ties_rank_non_matches_first():
    gallery_pids = torch.tensor([1, 1, 2, 1, 3])
    sim = torch.tensor([
        # pid 1: g3 rank 1; tie at 0.6: non-match g2 rank 2, g0/g1 ranks 3, 4
        [0.6, 0.6, 0.6, 0.9, 0.2],
        # all tied: the two non-matches (g2, g4) first, matches ranks 3, 4, 5
        [0.5, 0.5, 0.5, 0.5, 0.5],
        # pid 3: the tie with the earlier-indexed match g0 does not help
        [0.7, 0.1, 0.1, 0.1, 0.7],
    ])
    out = rank_metrics(sim, torch.tensor([1, 1, 3]), gallery_pids,
                       topk=(1, 2, 3))
    ap = [(1 + 2 / 3 + 3 / 4) / 3, (1 / 3 + 2 / 4 + 3 / 5) / 3, 1 / 2]
    inp = [3 / 4, 3 / 5, 1 / 2]
    assert_close(out, {
        'R1': 100 / 3,
        'R2': 200 / 3,
        'R3': 100.0,
        'mAP': sum(ap) / 3 * 100,
        'mINP': sum(inp) / 3 * 100,
    })


def test_ties_between_matches_only():
    # two matches tied at the top take ranks 1 and 2: AP = INP = 1
    out = rank_metrics(
        torch.tensor([[0.8, 0.3, 0.8]]), torch.tensor([5]),
        torch.tensor([5, 6, 5]), topk=(1, ))
    assert_close(out, {'R1': 100.0, 'mAP': 100.0, 'mINP': 100.0})


def test_infinite_scores_are_ranked():
    inf = float('inf')
    sim = torch.tensor([[inf, 0.0, -inf, inf], [-inf, -inf, 0.5, -inf]])
    gallery_pids = torch.tensor([1, 2, 1, 2])
    # row 0, pid 1: g3 (non-match, inf) ranks ahead of tied g0 -> ranks 2, 4
    # row 1, pid 2: g2 first; g1, g3 tied at -inf behind non-match g0 ->
    # ranks 3, 4
    out = rank_metrics(sim, torch.tensor([1, 2]), gallery_pids, topk=(2, ))
    assert_close(out, {
        'R2': 50.0,
        'mAP': ((1 / 2 + 2 / 4) / 2 + (1 / 3 + 2 / 4) / 2) / 2 * 100,
        'mINP': (2 / 4 + 2 / 4) / 2 * 100,
    })
    assert_close(out, reference_metrics(sim, torch.tensor([1, 2]),
                                        gallery_pids, topk=(2, )))


def test_signed_zeros_are_tied():
    # -0.0 == +0.0: the non-match at +0.0 is ranked ahead of the match
    sim = torch.tensor([[-0.0, 0.0, -1.0], [0.0, -0.0, -1.0]])
    out = rank_metrics(sim, torch.tensor([1, 1]), torch.tensor([1, 2, 1]),
                       topk=(1, ))
    ap = (1 / 2 + 2 / 3) / 2
    assert_close(out, {'R1': 0.0, 'mAP': ap * 100, 'mINP': 2 / 3 * 100})


def test_each_search_path_is_taken(search_path, monkeypatch):
    def fail(*args):
        raise AssertionError('wrong path')

    outcomes = []
    if search_path == 'sparse':
        original = retrieval._sparse_at_least

        def spy(*args):
            outcomes.append(original(*args))
            return outcomes[-1]

        monkeypatch.setattr(retrieval, '_sparse_at_least', spy)
        monkeypatch.setattr(retrieval, '_batched_at_least', fail)
    else:
        monkeypatch.setattr(retrieval, '_sparse_at_least', fail)
    query, gallery, query_pids, gallery_pids = random_case(
        9, 20, 3, seed=8, dtype=torch.float32)
    gallery_pids[:3] = torch.arange(3)
    query_pids = query_pids % 3
    assert_close(
        rank_metrics_from_features(query, gallery, query_pids, gallery_pids,
                                   chunk_size=4),
        reference_metrics(query @ gallery.T, query_pids, gallery_pids))
    if search_path == 'sparse':
        # 9 queries, in chunks of 4 (split among threads): every row once
        assert sum(block.shape[0] for block in outcomes) == 9
        assert all(block is not None for block in outcomes)


def test_sparse_counts_equal_brute_force(search_path):
    if search_path != 'sparse':
        pytest.skip('one run is enough')
    # negative and positive scores, signed zeros, ties with the thresholds,
    # +inf padding thresholds, rows where only the matches qualify
    gen = torch.Generator().manual_seed(12)
    sim = torch.randint(-4, 5, (6, 25), generator=gen).float() / 4
    sim[0, :5] = torch.tensor([-0.0, 0.0, -0.0, 0.0, -0.0])
    thresholds = torch.sort(sim[:, :4], dim=1).values
    thresholds[0] = torch.tensor([-0.0, 0.0, 0.0, float('inf')])
    thresholds[1, 1:] = float('inf')  # one real match, padded
    sim[2] = -1.0
    sim[2, 0] = 1.0
    thresholds[2] = torch.tensor([1.0, 1.0, float('inf'), float('inf')])
    expected = (sim[:, None, :] >= thresholds[:, :, None]).sum(2)
    out = retrieval._sparse_at_least(sim.numpy(), thresholds.numpy(), 1.0)
    assert out.tolist() == expected.tolist()
    assert out[2].tolist() == [1, 1, 0, 0]
    assert out[0, 0] == (sim[0] >= 0).sum()
    assert retrieval._batched_at_least(sim, thresholds).tolist() == \
        expected.tolist()


def test_int64_bucket_indices(monkeypatch):
    # batched chunks whose row offsets do not fit int32 use int64 indices
    monkeypatch.setattr(retrieval, '_INT32_LIMIT', 8)
    monkeypatch.setattr(retrieval, 'SPARSE_MAX_FRACTION', 0.0)
    query, gallery, query_pids, gallery_pids = random_case(
        12, 30, 4, seed=9, dtype=torch.float32)
    assert_close(
        rank_metrics_from_features(query, gallery, query_pids, gallery_pids,
                                   chunk_size=5),
        reference_metrics(query @ gallery.T, query_pids, gallery_pids))


def test_sparse_falls_back_to_dense_per_chunk(search_path, monkeypatch):
    if search_path != 'dense':
        pytest.skip('one run is enough')
    monkeypatch.setattr(retrieval, 'SPARSE_MAX_FRACTION', 0.5)
    # one sparse call per chunk (no split of the rows among threads)
    monkeypatch.setattr(torch, 'get_num_threads', lambda: 1)
    outcomes = []
    original = retrieval._sparse_at_least

    def spy(*args):
        result = original(*args)
        outcomes.append(result is not None)
        return result

    monkeypatch.setattr(retrieval, '_sparse_at_least', spy)
    gen = torch.Generator().manual_seed(11)
    sim = torch.rand(40, 30, generator=gen)
    gallery_pids = torch.arange(30) % 3
    query_pids = torch.arange(40) % 3
    # first 20 queries: their matches score lowest (every score reaches the
    # lowest match: dense); last 20: their matches score highest (1/3 of the
    # scores reach it: sparse)
    match = query_pids[:, None] == gallery_pids[None, :]
    low = (torch.arange(40) < 20)[:, None] & match
    high = (torch.arange(40) >= 20)[:, None] & match
    sim = torch.where(low, sim - 2, torch.where(high, sim + 2, sim))
    out = rank_metrics_from_features(
        sim, torch.eye(30), query_pids, gallery_pids, chunk_size=10)
    assert outcomes == [False, False, True, True]
    assert_close(out, reference_metrics(sim, query_pids, gallery_pids))


@pytest.mark.parametrize('threads', [1, 2, 3])
def test_thread_count_does_not_change_results(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        query, gallery, query_pids, gallery_pids = random_case(
            23, 40, 5, seed=10, dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            assert_close(
                rank_metrics_from_features(query, gallery, query_pids,
                                           gallery_pids, chunk_size=7),
                reference_metrics(query @ gallery.T, query_pids,
                                  gallery_pids))
    finally:
        torch.set_num_threads(previous)


def test_query_without_match_is_excluded_with_warning():
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.1, 0.2, 0.3, 0.4]])
    gallery_pids = torch.tensor([10, 20, 30, 40])
    with pytest.warns(UserWarning) as record:
        out = rank_metrics(sim, torch.tensor([20, 99]), gallery_pids,
                           topk=(1, 2))
    assert str(record[0].message) == (
        '1 of 2 queries have no matching gallery item (their pid is not in '
        'gallery_pids); they are excluded from R@k, mAP and mINP')
    # only the first query counts: match at rank 2
    assert_close(out, {'R1': 0.0, 'R2': 100.0, 'mAP': 50.0, 'mINP': 50.0})


def test_no_query_with_match_raises():
    with pytest.raises(ValueError, match='none of the 2 queries has a '
                       'matching gallery item'):
        rank_metrics(torch.rand(2, 3), torch.tensor([7, 8]),
                     torch.tensor([1, 2, 3]))


def test_all_matches_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        out = rank_metrics(torch.rand(3, 5), torch.tensor([1, 1, 1]),
                           torch.ones(5, dtype=torch.int64), topk=(1, ))
    assert_close(out, {'R1': 100.0, 'mAP': 100.0, 'mINP': 100.0})


@pytest.mark.parametrize('dtype', [torch.int8, torch.int16, torch.int32,
                                   torch.int64, torch.uint8])
def test_any_integer_pid_dtype(dtype):
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1]])
    out = rank_metrics(sim, torch.tensor([3], dtype=dtype),
                       torch.tensor([1, 2, 3, 4], dtype=torch.int64),
                       topk=(1, ))
    assert_close(out, {'R1': 0.0, 'mAP': 100 / 3, 'mINP': 100 / 3})


# ------------------------------------------------------- random vs reference
def random_case(num_query, num_gallery, num_ids, dim=16, seed=0,
                dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(num_query, dim, generator=gen, dtype=dtype)
    gallery = torch.randn(num_gallery, dim, generator=gen, dtype=dtype)
    query_pids = torch.randint(0, num_ids, (num_query, ), generator=gen)
    gallery_pids = torch.randint(0, num_ids, (num_gallery, ), generator=gen)
    return query, gallery, query_pids, gallery_pids


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_equals_full_sort_reference_without_ties(seed, dtype):
    query, gallery, query_pids, gallery_pids = random_case(
        50, 80, 12, seed=seed, dtype=dtype)
    sim = query @ gallery.T
    assert sim.flatten().unique().numel() == sim.numel()  # no ties
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # some pids may miss the gallery
        expected = reference_metrics(sim, query_pids, gallery_pids)
        assert_close(rank_metrics(sim, query_pids, gallery_pids), expected)
        for chunk_size in (1, 7, 50, 1000):
            assert_close(
                rank_metrics_from_features(query, gallery, query_pids,
                                           gallery_pids,
                                           chunk_size=chunk_size), expected)


@pytest.mark.parametrize('seed', [0, 1])
def test_equals_reference_with_many_ties(seed):
    gen = torch.Generator().manual_seed(seed)
    # scores on a coarse grid: most rows have many ties, also across matches
    sim = torch.randint(0, 5, (40, 60), generator=gen).float() / 4
    query_pids = torch.randint(0, 6, (40, ), generator=gen)
    gallery_pids = torch.randint(0, 6, (60, ), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert_close(
            rank_metrics(sim, query_pids, gallery_pids, topk=(1, 2, 3, 20)),
            reference_metrics(sim, query_pids, gallery_pids,
                              topk=(1, 2, 3, 20)))


def test_from_features_with_ties_matches_rank_metrics():
    # integer-valued features: exact dot products, many equal scores
    gen = torch.Generator().manual_seed(3)
    query = torch.randint(-1, 2, (30, 4), generator=gen).float()
    gallery = torch.randint(-1, 2, (45, 4), generator=gen).float()
    query_pids = torch.randint(0, 5, (30, ), generator=gen)
    gallery_pids = torch.arange(45) % 5
    expected = reference_metrics(query @ gallery.T, query_pids, gallery_pids)
    for chunk_size in (1, 4, 30):
        assert_close(
            rank_metrics_from_features(query, gallery, query_pids,
                                       gallery_pids, chunk_size=chunk_size),
            expected)


def test_float32_and_half_similarity():
    query, gallery, query_pids, gallery_pids = random_case(
        20, 30, 4, seed=5, dtype=torch.float32)
    sim = query @ gallery.T
    expected = reference_metrics(sim, query_pids, gallery_pids)
    assert_close(rank_metrics(sim, query_pids, gallery_pids), expected)
    half = sim.half()
    assert_close(rank_metrics(half, query_pids, gallery_pids),
                 reference_metrics(half.double(), query_pids, gallery_pids))


def test_large_match_sets_and_explicit_device():
    # one identity owns most of the gallery; cpu given as a string
    query, gallery, _, _ = random_case(10, 200, 1, seed=4)
    gallery_pids = torch.zeros(200, dtype=torch.int64)
    gallery_pids[::10] = 1
    query_pids = torch.tensor([0, 1] * 5)
    expected = reference_metrics(query @ gallery.T, query_pids, gallery_pids)
    assert_close(
        rank_metrics_from_features(query, gallery, query_pids, gallery_pids,
                                   chunk_size=3, device='cpu'), expected)


def test_default_chunk_size_follows_gallery_size(monkeypatch):
    seen = []
    original = retrieval._run

    def spy(*args):
        seen.append(args[4])
        return original(*args)

    monkeypatch.setattr(retrieval, '_run', spy)
    monkeypatch.setattr(retrieval, 'CHUNK_ELEMENTS', 100)
    query, gallery, query_pids, gallery_pids = random_case(
        30, 40, 3, seed=13, dtype=torch.float32)
    gallery_pids[:3] = torch.arange(3)
    query_pids = query_pids % 3
    expected = reference_metrics(query @ gallery.T, query_pids, gallery_pids)
    assert_close(
        rank_metrics_from_features(query, gallery, query_pids, gallery_pids),
        expected)
    assert_close(rank_metrics(query @ gallery.T, query_pids, gallery_pids),
                 expected)
    monkeypatch.setattr(retrieval, 'CHUNK_ELEMENTS', 10)
    rank_metrics(query @ gallery.T, query_pids, gallery_pids)
    assert seen == [2, 2, 1]  # 100 // 40, then at least one row


def test_inputs_requiring_grad():
    query, gallery, query_pids, gallery_pids = random_case(
        6, 9, 2, seed=12, dtype=torch.float32)
    gallery_pids[:2] = torch.arange(2)
    query_pids = query_pids % 2
    expected = reference_metrics(query @ gallery.T, query_pids, gallery_pids)
    query.requires_grad_(True)
    assert_close(
        rank_metrics_from_features(query, gallery, query_pids, gallery_pids),
        expected)
    assert_close(
        rank_metrics(query @ gallery.T, query_pids, gallery_pids), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_equals_cpu():
    query, gallery, query_pids, gallery_pids = random_case(64, 90, 8, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert_close(
            rank_metrics_from_features(query, gallery, query_pids,
                                       gallery_pids, device='cuda'),
            reference_metrics(query @ gallery.T, query_pids, gallery_pids))


# -------------------------------------------------------------- bad inputs
def test_rank_metrics_input_errors():
    sim = torch.rand(2, 3)
    qp, gp = torch.tensor([1, 2]), torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r'similarity must have shape '
                       r'\[Q, G\] with Q, G >= 1, got \[6\]'):
        rank_metrics(sim.flatten(), qp, gp)
    with pytest.raises(TypeError, match='similarity must have a '
                       'floating-point dtype, got torch.int64'):
        rank_metrics(sim.long(), qp, gp)
    with pytest.raises(ValueError, match=r'query_pids must have shape \[2\] '
                       r'\(one pid per similarity row\), got \[3\]'):
        rank_metrics(sim, gp, gp)
    with pytest.raises(ValueError, match=r'gallery_pids must have shape \[3\]'
                       r' \(one pid per similarity column\), got \[2\]'):
        rank_metrics(sim, qp, qp)
    with pytest.raises(TypeError, match='query_pids must have an integer '
                       'dtype, got torch.float32'):
        rank_metrics(sim, qp.float(), gp)
    with pytest.raises(TypeError, match='gallery_pids must be a '
                       'torch.Tensor, got list'):
        rank_metrics(sim, qp, [1, 2, 3])
    nan_sim = sim.clone()
    nan_sim[1, 2] = float('nan')
    with pytest.raises(ValueError, match='similarity contains NaN'):
        rank_metrics(nan_sim, qp, gp)
    with pytest.raises(ValueError, match=r'topk \(1, 0\): each value must '
                       r'be a positive int, got 0'):
        rank_metrics(sim, qp, gp, topk=(1, 0))
    with pytest.raises(ValueError, match='topk must contain at least one'):
        rank_metrics(sim, qp, gp, topk=())
    with pytest.raises(ValueError, match=r'topk \(1, 5, 1\) repeats a '
                       'value; give each k once'):
        rank_metrics(sim, qp, gp, topk=(1, 5, 1))


def test_from_features_input_errors():
    query, gallery = torch.rand(2, 4), torch.rand(3, 4)
    qp, gp = torch.tensor([1, 2]), torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match='query_feats and gallery_feats must '
                       'have the same feature size, got 4 and 5'):
        rank_metrics_from_features(query, torch.rand(3, 5), qp, gp)
    with pytest.raises(ValueError, match=r'gallery_feats must have shape '
                       r'\[N, D\] with N >= 1, got \[0, 4\]'):
        rank_metrics_from_features(query, torch.rand(0, 4), qp, gp)
    with pytest.raises(ValueError, match=r'query_pids must have shape \[2\] '
                       r'\(one pid per query_feats row\), got \[3\]'):
        rank_metrics_from_features(query, gallery, gp, gp)
    with pytest.raises(ValueError, match='chunk_size must be a positive int '
                       'or None, got 0'):
        rank_metrics_from_features(query, gallery, qp, gp, chunk_size=0)
    bad = query.clone()
    bad[0, 1] = float('inf')
    with pytest.raises(ValueError, match='query_feats contains NaN or '
                       'infinite values'):
        rank_metrics_from_features(bad, gallery, qp, gp)
    with pytest.raises(TypeError, match='gallery_feats must have a '
                       'floating-point dtype, got torch.int64'):
        rank_metrics_from_features(query, gallery.long(), qp, gp)

"""Ranking: the exact NumPy top-k and Ranker of mdrl_deploy."""
import os
import re

import numpy as np
import pytest
import torch

from mdrl_deploy.ranking import Ranker, summarize, topk_cosine

GALLERY = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]],
                   np.float32)
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]], np.float32)


def unit(rows, dim, seed):
    x = np.random.default_rng(seed).standard_normal((rows, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_hand_computed_ranking():
    scores, idx = topk_cosine(QUERIES, GALLERY, 2)
    # q0 . g = [1, .6, 0, -1]; q1 . g = [0, .8, 1, 0];
    # q2 . g = [-.6, -.36+.64=.28, .8, .6]
    assert idx.tolist() == [[0, 1], [2, 1], [2, 3]]
    assert idx.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, [[1.0, 0.6], [1.0, 0.8], [0.8, 0.6]],
                               atol=1e-6)


def test_k_is_clipped_to_the_gallery():
    scores, idx = topk_cosine(QUERIES[:1], GALLERY, 100)
    assert idx.tolist() == [[0, 1, 2, 3]]
    np.testing.assert_allclose(scores, [[1.0, 0.6, 0.0, -1.0]], atol=1e-6)


@pytest.mark.parametrize('max_elements', [1, 8, 9, 40, 1 << 20])
def test_blocks_do_not_change_the_result(max_elements):
    g, q = unit(50, 8, 0), unit(7, 8, 1)
    s, i = topk_cosine(q, g, 5, max_elements=max_elements)
    full = np.argsort(-(q @ g.T), axis=1, kind='stable')[:, :5]
    assert i.tolist() == full.tolist()
    np.testing.assert_allclose(s, np.take_along_axis(q @ g.T, full, 1),
                               atol=1e-6)


def test_memory_ceiling_holds_for_a_memory_map(tmp_path, monkeypatch):
    """No block holds more than max_elements values (a map is never read
    whole)."""
    g = np.lib.format.open_memmap(str(tmp_path / 'g.npy'), 'w+', np.float32,
                                  (1000, 8))
    g[:] = unit(1000, 8, 2)
    seen = []
    real_asarray = np.asarray

    def spy(a, *args, **kwargs):
        out = real_asarray(a, *args, **kwargs)
        if isinstance(a, np.memmap):
            seen.append(out.size)
        return out

    monkeypatch.setattr(np, 'asarray', spy)
    s, i = topk_cosine(unit(3, 8, 3), g, 4, max_elements=64)
    monkeypatch.undo()
    assert seen and max(seen) <= 64 and sum(seen) == 8000
    ref = np.argsort(-(unit(3, 8, 3) @ np.asarray(g).T), axis=1,
                     kind='stable')[:, :4]
    assert i.tolist() == ref.tolist()


def test_errors():
    with pytest.raises(ValueError, match='Query features are 3-d but the '
                       'gallery features are 2-d'):
        topk_cosine(np.zeros((1, 3)), GALLERY, 1)
    for k in (0, 1.5, True):
        with pytest.raises(ValueError, match=re.escape(
                f'topk must be a positive int, got {k!r}')):
            topk_cosine(QUERIES, GALLERY, k)
    with pytest.raises(ValueError, match=r'needs \[T, D\] queries'):
        topk_cosine(np.zeros(3), GALLERY, 1)


def test_equal_scores_come_in_gallery_order():
    # rows 1, 3 and 4 are duplicates of one feature; row 0 is the best
    g = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [0.6, 0.8],
                  [0.6, 0.8]], np.float32)
    q = np.array([[0.8, 0.6]], np.float32)  # . g = [.8, .96, -.8, .96, .96]
    for max_elements in (1, 1 << 20):
        s, i = topk_cosine(q, g, 5, max_elements=max_elements)
        assert i.tolist() == [[1, 3, 4, 0, 2]]
        np.testing.assert_allclose(s, [[0.96, 0.96, 0.96, 0.8, -0.8]],
                                   atol=1e-6)
        # the tie at the k-th place keeps the lowest indices
        assert topk_cosine(q, g, 2, max_elements=max_elements)[1].tolist() \
            == [[1, 3]]
    # reversed gallery: still ascending index among the ties
    s, i = topk_cosine(q, g[::-1], 4)
    assert i.tolist() == [[0, 1, 3, 4]]


def global_local(num, seed, noise, parts=4, dim=16):
    """``[g, l_1 .. l_P] / sqrt(P + 1)`` unit features whose local parts are
    ``g`` plus ``noise`` (small noise: like a trained model's)."""
    rng = np.random.default_rng(seed)
    g = unit(num, dim, seed)[:, None]
    local = g + noise * rng.standard_normal((num, parts, dim)) / dim ** 0.5
    feats = np.concatenate([g, local], 1)
    feats /= np.linalg.norm(feats, axis=2, keepdims=True)
    return (feats / np.sqrt(parts + 1)).reshape(num, -1).astype(np.float32)


def test_summary_and_spread_by_hand():
    # one image, G = 2, P = 2: B_0 = [1, 0], B_1 = [0, 1], B_2 = [0, -1]
    feats = np.array([[1, 0, 0, 1, 0, -1]], np.float32) / np.sqrt(3)
    summary, spread = summarize(feats, 2)
    np.testing.assert_allclose(summary, [[1 / np.sqrt(3)], [0], [0], [0]],
                               atol=1e-7)
    np.testing.assert_allclose(spread, [[1 / np.sqrt(3)]] * 2, atol=1e-7)
    # one column per image, whatever the block size
    more = global_local(10, 5, noise=0.3, parts=3, dim=4)
    summary, spread = summarize(more, 4, max_elements=16)
    assert summary.shape == (8, 10) and spread.shape == (3, 10)
    b = more.reshape(10, 4, 4)
    np.testing.assert_allclose(summary[:4], b[:, 0].T)
    np.testing.assert_allclose(summary[4:], b[:, 1:].sum(1).T, atol=1e-6)
    np.testing.assert_allclose(
        spread, np.linalg.norm(b[:, 1:] - b[:, 1:].mean(1, keepdims=True),
                               axis=2).T, atol=1e-6)
    with pytest.raises(ValueError, match='not global \\+ local parts'):
        summarize(feats, 4)


@pytest.mark.parametrize('noise', [0.05, 0.5, 3.0])
@pytest.mark.parametrize('max_elements, max_candidates', [
    (1 << 22, 1 << 18), (64, 1 << 18), (64, 12)])
def test_ranker_is_exactly_the_full_ranking(noise, max_elements,
                                            max_candidates):
    """Tight bounds (trained-like features), loose ones (local parts
    unrelated to the global one: most images kept, or a full scan), small
    blocks and a small candidate buffer: always topk_cosine's result."""
    feats = global_local(600, 0, noise)
    feats[[7, 300, 599]] = feats[11]  # duplicates: ties across blocks
    queries = np.concatenate([global_local(9, 1, 0.05), feats[[11, 40]]])
    ranker = Ranker(feats, *summarize(feats, 16), max_elements=max_elements,
                    max_candidates=max_candidates)
    for k in (1, 4, 10, 600):
        s, i = ranker.search(queries, k)
        exact_s, exact_i = topk_cosine(queries, feats, k)
        assert i.tolist() == exact_i.tolist()
        np.testing.assert_allclose(s, exact_s, atol=1e-6)
    assert ranker.search(queries, 5)[1][-2][:4].tolist() == [7, 11, 300, 599]


class RowSpy:
    """A gallery that records the most rows one read asked for."""

    def __init__(self, array):
        self.array, self.shape, self.most = array, array.shape, 0
        self.ndim = array.ndim

    def __getitem__(self, rows):
        self.most = max(self.most, len(self.array[rows]))
        return self.array[rows]


def test_ties_do_not_break_the_memory_ceiling():
    """400 identical images all tie at the k-th score: all are kept for the
    exact re-rank, which reads them block by block."""
    feats = global_local(600, 6, noise=0.05)
    feats[100:500] = feats[0]
    query = feats[[0]]
    for ranker in (lambda g: topk_cosine(query, g, 10, max_elements=32 * 80),
                   lambda g: Ranker(g, *summarize(feats, 16), max_fraction=1,
                                    max_elements=32 * 80).search(query, 10)):
        spy = RowSpy(feats)
        s, i = ranker(spy)
        assert i.tolist() == [[0] + list(range(100, 109))]
        np.testing.assert_array_equal(s, topk_cosine(query, feats, 10)[0])
        assert spy.most <= 32


@pytest.mark.filterwarnings('ignore:invalid value:RuntimeWarning')
def test_non_finite_features_are_refused_not_misranked():
    """One NaN row used to shorten the near-top list below k (a broadcast
    error far inside NumPy) or drop out silently."""
    feats = global_local(300, 4, noise=0.05)
    queries = global_local(2, 5, noise=0.05)
    message = re.escape('Gallery row(s) 123 have non-finite features (NaN or '
                        'inf): the index file is damaged or its model '
                        'overflowed; rebuild the index.')
    damaged = feats.copy()
    damaged[123, 40] = np.nan
    with pytest.raises(ValueError, match=message):
        topk_cosine(queries, damaged, 5, max_elements=64 * 16)
    with pytest.raises(ValueError, match=message):  # the summary is damaged
        Ranker(damaged, *summarize(damaged, 16)).search(queries, 5)
    summary, spread = summarize(feats, 16)  # only the features are
    damaged = feats.copy()
    damaged[123] = np.inf
    ranker = Ranker(damaged, summary, spread, max_fraction=1.0,
                    max_candidates=300)
    with pytest.raises(ValueError, match=message):
        ranker.search(feats[[123]], 5)  # row 123 is re-ranked
    with pytest.raises(ValueError, match=re.escape(
            'Query features are not finite (NaN or inf).')):
        topk_cosine(np.full((1, 80), np.nan, np.float32), feats, 5)


def test_ranker_reads_the_summary_not_the_features():
    """With tight bounds only a few images are ranked with their features."""
    feats = global_local(5000, 2, noise=0.05)
    ranker = Ranker(feats, *summarize(feats, 16))
    queries = global_local(5, 3, noise=0.05)
    kept = [len(rows) for rows in ranker.shortlist(queries, 10)]
    assert all(10 <= n < 250 for n in kept), kept
    with pytest.raises(ValueError, match='no summary'):
        Ranker(feats).shortlist(queries, 10)
    # loose bounds: past max_fraction of the gallery, a full scan
    assert Ranker(feats, *summarize(feats, 16), max_fraction=0.001
                  ).shortlist(global_local(2, 4, noise=3.0), 10) == [None] * 2


def adversarial(seed, groups=16, dim=4):
    """A query and a gallery on which the bounds are reached, at near-ties.

    Features have a global and P = 2 local parts of width ``dim``. Image
    deviations ``B_l - M`` are multiples of the query's ``Q_l - Qm``, so
    Cauchy-Schwarz is an equality: each image's score is exactly its upper
    bound (positive multiple) or its lower bound (negative one). Each group
    holds an image ``x`` at its upper bound, a duplicate of it, and images at
    their lower bound scoring ``S_x - delta`` (six with delta 0, then 1e-7,
    1e-5, 1e-3): in real arithmetic the k-th lower bound equals, or nearly
    equals, an upper bound, so only the float32 slack keeps ``x``.
    """
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((3, dim))
    q /= np.linalg.norm(q)
    q_dev = q[1:] - q[1:].mean(axis=0)
    d2 = (q_dev ** 2).sum()
    rows = []
    for _ in range(groups):
        glob, mean = rng.standard_normal((2, dim)) * 0.3
        c = rng.uniform(0.5, 1.5)
        x = np.concatenate([glob[None], mean + c * q_dev])
        rows += [x, x]
        for delta in (0.0,) * 6 + (1e-7, 1e-5, 1e-3):
            c_j = rng.uniform(0.5, 1.5)  # score = est_j - c_j * d2
            shift = (c + c_j) * d2 - delta  # est_j = est_x + shift
            glob_j = glob + shift * q[0] / (q[0] ** 2).sum()
            rows.append(np.concatenate([glob_j[None], mean - c_j * q_dev]))
    feats = np.stack(rows).reshape(len(rows), -1)
    feats /= np.linalg.norm(feats, axis=1).max()
    return (q.reshape(1, -1).astype(np.float32), feats.astype(np.float32))


@pytest.mark.parametrize('seed', range(6))
def test_ranker_is_exact_where_bounds_are_reached(seed):
    """Brute force against the shortlist where the bounds hold with equality
    and upper bounds (nearly) equal lower bounds, with exact ties, at every
    k: the same ranking, made by the shortlist (not a full scan). With
    bounds 1 % too small every seed fails, without the float32 slack most
    seeds do."""
    query, feats = adversarial(seed)
    num = len(feats)
    summary, spread = summarize(feats, 4)
    est = np.concatenate([query[0, :4], query[0, 4:].reshape(2, 4).mean(0)]
                         ) @ summary
    exact = feats.astype(np.float64) @ query[0].astype(np.float64)
    bound = np.linalg.norm(
        query[0, 4:].reshape(2, 4) - query[0, 4:].reshape(2, 4).mean(0),
        axis=1) @ spread
    assert np.allclose(np.abs(exact - est), bound, atol=1e-6)  # reached
    ranker = Ranker(feats, summary, spread, max_fraction=1.0,
                    max_elements=24)
    for k in range(1, num + 1):
        rows = ranker.shortlist(query, k)[0]
        assert rows is not None and len(rows) >= k
        s, i = ranker.search(query, k)
        exact_s, exact_i = topk_cosine(query, feats, k)
        assert i.tolist() == exact_i.tolist(), k
        assert s.tolist() == exact_s.tolist(), k


@pytest.mark.filterwarnings(
    'ignore::mdrl_deploy.search.QueryTruncatedWarning')
def test_demo_test_queries_get_the_exact_top10(tiny_bert_dir, tiny_pedes_root,
                                               tmp_path):
    """The captions of a demo dataset (tools/make_demo_data.py) against all
    its images, global+local features of a seeded random model: the
    searcher's ranking, and the shortlist + re-rank path forced on every
    query, equal the exact top-k, and the shortlist is smaller than the
    gallery (15 to 21 of 36 images at k = 10 when written)."""
    import json

    from mmengine import Config

    from mdrl_plugin.apis import PersonSearcher
    from test_apis.search_testdata import write_model

    from mdrl_test_utils import tiny_mdrl_cfg
    model = write_model(str(tmp_path), tiny_bert_dir, seed=3)
    cfg = Config.fromfile(model['config'])
    cfg.model = tiny_mdrl_cfg(tiny_bert_dir, retrieval_features='global+local')
    cfg.dump(model['config'])
    torch.manual_seed(3)
    from mdrl_plugin.registry import MODELS
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict()},
               model['checkpoint'])
    searcher = PersonSearcher(model['config'], model['checkpoint'],
                              progress=False)
    index = searcher.build_index(os.path.join(tiny_pedes_root, 'imgs'))
    assert index.global_dim == 32 and index.summary.shape == (64, 36)
    with open(os.path.join(tiny_pedes_root, 'reid_raw.json')) as f:
        captions = [c for r in json.load(f) if r['split'] == 'test'
                    for c in r['captions']]
    assert len(captions) == 18
    queries = searcher.encode_texts(captions)
    ranker = Ranker(index.features, index.summary, index.spread,
                    max_fraction=1.0)
    for k in (1, 5, 10):
        hits = searcher.search_features(queries, k)
        exact_s, exact = topk_cosine(queries, index.features, k)
        assert [[h.index for h in q] for q in hits] == exact.tolist()
        kept = [len(rows) for rows in ranker.shortlist(queries, k)]
        # the shortlist path ran, and re-ranked fewer than all 36 images
        assert all(k <= n < len(index) for n in kept), (k, kept)
        s, i = ranker.search(queries, k)
        assert i.tolist() == exact.tolist() and s.tolist() == exact_s.tolist()

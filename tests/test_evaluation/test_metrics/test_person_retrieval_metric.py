"""Tests of PersonRetrievalMetric."""
import math
import os
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.structures import BaseDataElement

from mdrl_plugin.evaluation.functional import rank_metrics_from_features
from mdrl_plugin.evaluation.metrics import PersonRetrievalMetric
from mdrl_plugin.registry import METRICS

from mdrl_test_utils import run_ranks

sys.path.insert(0, os.path.dirname(__file__))
from _metric_dist_worker import run_worker  # noqa: E402,I100

WORLD_SIZE = 2


def sample(img, texts, pid):
    return dict(
        img_feat=torch.tensor(img, dtype=torch.float32),
        text_feats=torch.tensor(texts, dtype=torch.float32).reshape(-1, 2),
        pid=pid)


def hand_samples():
    """Three images, captions 2 / 0 / 1, features chosen for hand ranks.

    Gallery (after L2 normalisation): g0 = (1, 0) pid 1, g1 = (0, 1) pid 2,
    g2 = (1, 1)/sqrt(2) pid 1 (given unnormalised as (3, 3)).
    Queries:
      q0 = (2, 0.1) pid 1: g0 > g2 > g1 -> matches at ranks 1, 2
      q1 = (0, 5)   pid 1: g1 > g2 > g0 -> matches at ranks 2, 3
      q2 = (1, -1)  pid 1: g0 > g2 > g1 -> matches at ranks 1, 2
    """
    return [
        sample([1.0, 0.0], [[2.0, 0.1], [0.0, 5.0]], 1),
        sample([0.0, 1.0], [], 2),
        sample([3.0, 3.0], [[1.0, -1.0]], 1),
    ]


HAND_EXPECTED = {
    'R1': 200 / 3,
    'R2': 100.0,
    'mAP': (1 + (1 / 2 + 2 / 3) / 2 + 1) / 3 * 100,
    'mINP': (1 + 2 / 3 + 1) / 3 * 100,
}


def assert_close(result, expected, tol=1e-6):
    assert set(result) == set(expected)
    for key in expected:
        assert result[key] == pytest.approx(expected[key], abs=tol), key


def build(**kwargs):
    return METRICS.build(dict(type='PersonRetrievalMetric', **kwargs))


def test_build_from_registry():
    metric = build(topk=(1, 2), chunk_size=4, prefix='test')
    assert isinstance(metric, PersonRetrievalMetric)
    assert metric.topk == (1, 2)
    assert metric.chunk_size == 4
    assert metric.prefix == 'test'
    assert metric.collect_device == 'cpu'


def test_hand_computed_metrics_with_variable_captions():
    metric = build(topk=(1, 2))
    samples = hand_samples()
    metric.process(None, samples[:2])
    metric.process(None, samples[2:])
    assert len(metric.results) == 3  # exactly one result per image
    assert_close(metric.evaluate(3), HAND_EXPECTED)
    assert metric.results == []  # evaluate resets the stored results


def test_prefix_and_chunk_size_do_not_change_numbers():
    metric = build(topk=(1, 2), chunk_size=1, prefix='val')
    metric.process(None, hand_samples())
    assert_close(metric.evaluate(3),
                 {f'val/{k}': v for k, v in HAND_EXPECTED.items()})


def test_accepts_data_elements_and_tensor_pids():
    samples = [
        BaseDataElement(
            img_feat=s['img_feat'], text_feats=s['text_feats'],
            pid=torch.tensor(s['pid'])) for s in hand_samples()
    ]
    metric = build(topk=(1, 2))
    metric.process(None, samples)
    assert all(isinstance(r['pid'], int) for r in metric.results)
    assert_close(metric.evaluate(3), HAND_EXPECTED)


def test_results_are_moved_to_cpu_and_detached():
    feat = torch.ones(2, requires_grad=True)
    metric = build()
    metric.process(None, [dict(img_feat=feat * 2,
                               text_feats=(feat * 3)[None], pid=4)])
    result = metric.results[0]
    assert result['img_feat'].device.type == 'cpu'
    assert not result['img_feat'].requires_grad
    assert not result['text_feats'].requires_grad
    assert result['pid'] == 4


def test_matches_functional_on_random_features():
    gen = torch.Generator().manual_seed(0)
    samples, queries, query_pids = [], [], []
    for i in range(12):
        n = i % 3  # 0, 1 or 2 captions
        texts = torch.randn(n, 8, generator=gen)
        samples.append(dict(img_feat=torch.randn(8, generator=gen),
                            text_feats=texts, pid=i % 4))
        queries.append(texts)
        query_pids += [i % 4] * n
    metric = build(chunk_size=5)
    metric.process(None, samples[:5])
    metric.process(None, samples[5:])
    gallery = torch.stack([s['img_feat'] for s in samples])
    expected = rank_metrics_from_features(
        torch.nn.functional.normalize(torch.cat(queries), dim=1),
        torch.nn.functional.normalize(gallery, dim=1),
        torch.tensor(query_pids), torch.arange(12) % 4)
    assert_close(metric.evaluate(12), expected)


def test_logs_query_and_gallery_counts(capsys):
    logger = MMLogger.get_instance('test_person_retrieval_metric')
    metric = build(topk=(1, 2))
    metric.process(None, hand_samples())
    metric.evaluate(3)
    assert logger is MMLogger.get_current_instance()
    out = capsys.readouterr()
    assert ('PersonRetrievalMetric: 3 text queries against 3 gallery images '
            '(2 identities)') in out.out + out.err


def test_padded_last_batch_is_dropped():
    """A sampler pads by repeating samples; evaluate(size) must drop them."""
    samples = hand_samples()
    metric = build(topk=(1, 2))
    metric.process(None, samples)
    metric.process(None, samples[:2])  # padding repeats of the first items
    assert len(metric.results) == 5
    assert_close(metric.evaluate(3), HAND_EXPECTED)
    # the same results without truncation give other numbers
    metric.process(None, samples)
    metric.process(None, samples[:2])
    padded = metric.compute_metrics(metric.results)
    assert padded['mAP'] != pytest.approx(HAND_EXPECTED['mAP'], abs=1e-3)


@pytest.fixture(scope='module')
def dist_results(tmp_path_factory):
    """Evaluate 5 images on 2 gloo ranks (rank 1 gets a padded repeat)."""
    tmp = tmp_path_factory.mktemp('metric_dist')
    gen = torch.Generator().manual_seed(1)
    samples = []
    for i, n in enumerate([2, 0, 1, 3, 1]):
        samples.append(dict(img_feat=torch.randn(6, generator=gen),
                            text_feats=torch.randn(n, 6, generator=gen),
                            pid=i % 3))
    return samples, run_ranks(run_worker, tmp, samples, 2,
                              world_size=WORLD_SIZE)


def test_two_ranks_equal_single_process(dist_results):
    samples, ranks = dist_results
    # the sampler padded: 6 indices for 5 images, rank 1 repeats image 0
    assert ranks[0]['indices'] == [0, 2, 4]
    assert ranks[1]['indices'] == [1, 3, 0]
    metric = build(topk=(1, 2))
    metric.process(None, samples)
    expected = metric.evaluate(len(samples))
    for rank in ranks:  # evaluate broadcasts the metrics to every rank
        assert_close(rank['metrics'], expected, tol=1e-9)
    # and the padded repeat would have changed them
    metric.process(None, samples + samples[:1])
    padded = metric.compute_metrics(metric.results)
    assert any(not math.isclose(padded[k], expected[k]) for k in expected)


# -------------------------------------------------------------- bad inputs
def test_missing_field_error():
    metric = build()
    with pytest.raises(KeyError, match="data sample 0 has no 'text_feats'"):
        metric.process(None, [dict(img_feat=torch.zeros(2), pid=1)])


@pytest.mark.parametrize('bad, message', [
    (dict(img_feat=torch.zeros(1, 2)),
     r'data sample 0 img_feat must be a 1-D tensor \[D\], got a tensor of '
     r'shape \[1, 2\]'),
    (dict(text_feats=torch.zeros(2)),
     r'data sample 0 text_feats must be a tensor \[n, 2\] \(n captions, '
     r'img_feat size\), got a tensor of shape \[2\]'),
    (dict(text_feats=torch.zeros(1, 3)),
     r'text_feats must be a tensor \[n, 2\].*got a tensor of shape \[1, 3\]'),
    (dict(pid='7'), "data sample 0 pid must be an integer, got '7'"),
    (dict(pid=torch.tensor([1, 2])),
     r'pid must be a single integer, got a tensor of shape \[2\]'),
])
def test_bad_sample_errors(bad, message):
    good = dict(img_feat=torch.zeros(2), text_feats=torch.zeros(1, 2), pid=1)
    with pytest.raises(ValueError, match=message):
        build().process(None, [dict(good, **bad)])


def test_no_captions_at_all_error():
    metric = build()
    metric.process(None, [sample([1.0, 0.0], [], 1)])
    with pytest.raises(ValueError, match=r'no caption features \(every '
                       r'text_feats is \[0, D\]\)'):
        metric.compute_metrics(metric.results)


@pytest.mark.parametrize('kwargs, message', [
    (dict(topk=(1, 0)),
     r'topk \(1, 0\): each value must be a positive int, got 0'),
    (dict(topk=()), r'topk must contain at least one value, got \(\)'),
    (dict(chunk_size=0), 'chunk_size must be a positive int or None, got 0'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)

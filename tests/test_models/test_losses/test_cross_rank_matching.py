"""Cross-rank matching: 2 gloo processes vs. 1 process on the whole batch."""
import copy

import pytest
import torch
from _losses_dist_worker import TwoTowers, run_worker  # noqa: I100

from mdrl_plugin.registry import MODELS

from mdrl_test_utils import run_ranks

WORLD_SIZE = 2


def _data(n: int, dim: int, seed: int) -> tuple:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    texts = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return images, texts


# Identities repeat within and across ranks, so q must be normalised over the
# global batch (e.g. identity 0 has rows on both ranks).
LABELS = torch.tensor([0, 1, 2, 0, 1, 3, 3, 2])

CASES = [
    dict(name='cmpm_equal', sizes=[4, 4],
         cfg=dict(type='CMPMLoss', gather_across_ranks=True)),
    dict(name='cmpm_unequal', sizes=[3, 5],
         cfg=dict(type='CMPMLoss', gather_across_ranks=True,
                  loss_weight=0.5)),
    dict(name='sdm_unequal', sizes=[5, 3],
         cfg=dict(type='SDMLoss', temperature=0.1,
                  gather_across_ranks=True)),
    dict(name='cmpm_empty_rank', sizes=[0, 8],
         cfg=dict(type='CMPMLoss', gather_across_ranks=True)),
]
for i, case in enumerate(CASES):
    case['images'], case['texts'] = _data(8, 6, seed=i)
    case['labels'] = LABELS


def _ddp_case() -> dict:
    torch.manual_seed(123)
    model = TwoTowers(5, 4).double()
    images, texts = _data(8, 5, seed=99)
    return dict(sizes=[3, 5], in_dim=5, out_dim=4, images=images,
                texts=texts, labels=LABELS,
                state_dict=copy.deepcopy(model.state_dict()),
                cfg=dict(type='SDMLoss', temperature=0.2,
                         gather_across_ranks=True))


DDP_CASE = _ddp_case()


@pytest.fixture(scope='module')
def rank_results(tmp_path_factory) -> list:
    """Run all cases once on 2 processes; results per rank."""
    cases = [{k: v for k, v in c.items() if k != 'name'} for c in CASES]
    return run_ranks(run_worker, tmp_path_factory.mktemp('cross_rank'), cases,
                     DDP_CASE, world_size=WORLD_SIZE)


def _single_process(cfg: dict, images: torch.Tensor, texts: torch.Tensor,
                    labels: torch.Tensor) -> tuple:
    cfg = dict(cfg, gather_across_ranks=False)
    images = images.clone().requires_grad_(True)
    texts = texts.clone().requires_grad_(True)
    loss = MODELS.build(cfg)(images, texts, labels)
    loss.backward()
    return loss.detach(), images.grad, texts.grad


@pytest.mark.parametrize('index', range(len(CASES)),
                         ids=[c['name'] for c in CASES])
def test_mean_rank_loss_equals_single_process_loss(rank_results, index):
    case = CASES[index]
    ref_loss, _, _ = _single_process(case['cfg'], case['images'],
                                     case['texts'], case['labels'])
    losses = [r['cases'][index]['loss'] for r in rank_results]
    mean_loss = sum(losses) / WORLD_SIZE
    torch.testing.assert_close(mean_loss, ref_loss, rtol=1e-10, atol=1e-10)
    # Not trivially equal per rank: each rank scores only its own rows.
    if case['sizes'][0] > 0:
        assert not torch.allclose(losses[0], losses[1])


@pytest.mark.parametrize('index', range(len(CASES)),
                         ids=[c['name'] for c in CASES])
def test_averaged_feature_grads_equal_single_process_grads(
        rank_results, index):
    case = CASES[index]
    _, ref_img_grad, ref_txt_grad = _single_process(
        case['cfg'], case['images'], case['texts'], case['labels'])
    image_grad = torch.cat(
        [r['cases'][index]['image_grad'] for r in rank_results]) / WORLD_SIZE
    text_grad = torch.cat(
        [r['cases'][index]['text_grad'] for r in rank_results]) / WORLD_SIZE
    assert image_grad.shape == ref_img_grad.shape == (8, 6)
    torch.testing.assert_close(image_grad, ref_img_grad, rtol=1e-9,
                               atol=1e-12)
    torch.testing.assert_close(text_grad, ref_txt_grad, rtol=1e-9,
                               atol=1e-12)
    assert ref_img_grad.abs().sum() > 0 and ref_txt_grad.abs().sum() > 0


def test_ddp_parameter_grads_equal_single_process_grads(rank_results):
    case = DDP_CASE
    model = TwoTowers(case['in_dim'], case['out_dim']).double()
    model.load_state_dict(case['state_dict'])
    feats = model(case['images'], case['texts'])
    cfg = dict(case['cfg'], gather_across_ranks=False)
    ref_loss = MODELS.build(cfg)(*feats, case['labels'])
    ref_loss.backward()
    mean_loss = sum(r['ddp']['loss'] for r in rank_results) / WORLD_SIZE
    torch.testing.assert_close(mean_loss, ref_loss.detach(), rtol=1e-10,
                               atol=1e-10)
    for name, param in model.named_parameters():
        assert param.grad.abs().sum() > 0
        for r in rank_results:  # DDP leaves the same averaged grad on all
            torch.testing.assert_close(r['ddp']['grads'][name], param.grad,
                                       rtol=1e-9, atol=1e-12)


def test_gather_concatenates_unequal_rows_in_rank_order(rank_results):
    expected_rows = torch.tensor([0., 1., 10., 11., 12.],
                                 dtype=torch.float64)[:, None]
    for rank, result in enumerate(rank_results):
        gathered = result['gather']
        assert gathered['world_size'] == 2
        torch.testing.assert_close(gathered['tensors'][0], expected_rows)
        assert gathered['tensors'][1].tolist() == [0, 0, 1, 1, 1]
    assert rank_results[0]['gather']['local_slice'] == slice(0, 2)
    assert rank_results[1]['gather']['local_slice'] == slice(2, 5)


def test_feature_width_mismatch_across_ranks_is_a_clear_error(rank_results):
    for result in rank_results:
        assert result['shape_error'] == (
            'gather_features: tensor 0 must have the same shape apart from '
            'dim 0 on every rank, got {0: (3, 4), 1: (3, 5)} (rank: shape)')

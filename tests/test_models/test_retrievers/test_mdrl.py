import pytest
import torch
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import MODELS

from mdrl_test_utils import tiny_mdrl_cfg

CAPTIONS = ['a man in red shirt', 'a woman in blue dress',
            'a man with green bag', 'a woman wearing yellow hat']


def train_batch(model, n_per_id=2, seed=0):
    """Pairs of 4 identities: a fixed random image pattern and caption each."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(0, 255, (4, 3, 32, 16), generator=g, dtype=torch.uint8)
    images, samples = [], []
    for label in range(4):
        for _ in range(n_per_id):
            images.append(patterns[label])
            samples.append(BaseDataElement(metainfo=dict(
                text=CAPTIONS[label], gt_label=label)))
    return model.data_preprocessor(dict(inputs=images, data_samples=samples), True), patterns


def test_loss_terms_and_gradients_reach_exactly_the_learnable_parts(tiny_mdrl):
    data, _ = train_batch(tiny_mdrl)
    tiny_mdrl.train()
    losses = tiny_mdrl(**data, mode='loss')
    assert set(losses) == {'loss_id_global', 'loss_id_local', 'loss_id_cim',
                           'loss_match_global', 'loss_match_local'}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for name, p in tiny_mdrl.named_parameters():
        if name.startswith('text_encoder.bert.'):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad and p.grad is not None, name


def test_weights_of_zero_skip_terms_and_scale_others(tiny_bert_dir):
    torch.manual_seed(0)
    base = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))
    torch.manual_seed(0)
    weighted = MODELS.build(tiny_mdrl_cfg(
        tiny_bert_dir, loss_weights=dict(id_cim=0.0, match_global=2.0)))
    data, _ = train_batch(base)
    base.eval(), weighted.eval()  # deterministic grouping and dropout
    a, b = base(**data, mode='loss'), weighted(**data, mode='loss')
    assert 'loss_id_cim' not in b
    torch.testing.assert_close(b['loss_match_global'], 2 * a['loss_match_global'])
    torch.testing.assert_close(b['loss_id_global'], a['loss_id_global'])


def test_global_only_model(tiny_bert_dir):
    model = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, image_local=None, cross_modal=None))
    data, _ = train_batch(model)
    assert set(model(**data, mode='loss')) == {'loss_id_global', 'loss_match_global'}
    assert model.cim_classifier is None and model.local_classifier is None


def test_predict_gives_features_per_image_and_caption(tiny_mdrl):
    tiny_mdrl.eval()
    samples = [BaseDataElement(metainfo=dict(texts=CAPTIONS[:3], pid=7)),
               BaseDataElement(metainfo=dict(texts=[], pid=9))]
    images = [torch.zeros(3, 32, 16, dtype=torch.uint8)] * 2
    data = tiny_mdrl.data_preprocessor(dict(inputs=images, data_samples=samples))
    out = tiny_mdrl(**data, mode='predict')
    assert out[0].img_feat.shape == (32, ) and out[0].text_feats.shape == (3, 32)
    assert out[1].text_feats.shape == (0, 32) and out[1].pid == 9
    torch.testing.assert_close(out[0].text_feats.norm(dim=1), torch.ones(3))
    feats = tiny_mdrl(**data, mode='tensor')
    torch.testing.assert_close(feats['text_feats'], out[0].text_feats)


@pytest.mark.parametrize('retrieval', ['global', 'global+local'])
def test_text_features_do_not_depend_on_padding(tiny_bert_dir, retrieval):
    model = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, retrieval_features=retrieval)).eval()
    pre = model.data_preprocessor
    short = pre.tokenize(['a man in red shirt'])
    pre.padding = 'max_length'
    long = pre.tokenize(['a man in red shirt'])
    assert long['input_ids'].shape[1] > short['input_ids'].shape[1]
    torch.testing.assert_close(model.extract_text_feat(**short),
                               model.extract_text_feat(**long), atol=1e-5, rtol=1e-5)
    # in a batch, a longer neighbour adds padding; the features stay the same
    batch = pre.tokenize(['a man in red shirt', CAPTIONS[3] + ' and long hair'])
    torch.testing.assert_close(model.extract_text_feat(**short)[0],
                               model.extract_text_feat(**batch)[0], atol=1e-5, rtol=1e-5)
    expected_dim = 32 * (3 if retrieval == 'global+local' else 1)
    assert model.extract_text_feat(**short).shape == (1, expected_dim)


def test_labels_beyond_num_classes_are_a_clear_error(tiny_mdrl):
    data, _ = train_batch(tiny_mdrl)
    data['data_samples'][0].set_metainfo(dict(gt_label=11))
    with pytest.raises(ValueError, match=r"classifier has 4 classes but a label of 11"
                                         r".*metainfo\['num_classes'\]"):
        tiny_mdrl(**data, mode='loss')


def test_config_errors(tiny_bert_dir):
    with pytest.raises(ValueError, match='same width'):
        MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, text_encoder=dict(
            type='BertTextEncoder', pretrained=tiny_bert_dir, num_lte_layers=0,
            out_channels=8)))
    with pytest.raises(ValueError, match='2 and 3 groups'):
        MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, text_local=dict(
            type='DisorderedLocalLearning', num_groups=3, num_heads=2)))
    with pytest.raises(KeyError, match='Unknown loss_weights'):
        MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, loss_weights=dict(cmpm=1.0)))
    with pytest.raises(ValueError, match='Invalid mode'):
        MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))({}, mode='train')


def test_unequal_groups_with_mean_aggregation(tiny_bert_dir):
    model = MODELS.build(tiny_mdrl_cfg(
        tiny_bert_dir, local_aggregation='mean',
        text_local=dict(type='DisorderedLocalLearning', num_groups=3, num_heads=2)))
    data, _ = train_batch(model)
    assert torch.isfinite(model(**data, mode='loss')['loss_match_local'])


def test_shared_local_encoder(tiny_bert_dir):
    model = MODELS.build(tiny_mdrl_cfg(tiny_bert_dir, share_local=True))
    assert model.text_local is model.image_local


def test_tiny_mdrl_overfits_a_handful_of_pairs(tiny_mdrl):
    from mdrl_plugin.evaluation.functional import rank_metrics
    torch.manual_seed(0)
    data, patterns = train_batch(tiny_mdrl)
    opt = torch.optim.AdamW([p for p in tiny_mdrl.parameters() if p.requires_grad], lr=3e-3)
    tiny_mdrl.train()
    history = []
    for _ in range(60):
        loss = sum(tiny_mdrl(**data, mode='loss').values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < 0.2 * history[0]
    tiny_mdrl.eval()
    pre = tiny_mdrl.data_preprocessor
    img = tiny_mdrl.extract_image_feat(pre.preprocess_images(list(patterns)))
    txt = tiny_mdrl.extract_text_feat(**pre.tokenize(CAPTIONS))
    pids = torch.arange(4)
    metrics = rank_metrics(txt @ img.T, pids, pids)
    assert metrics['R1'] == 100.0 and metrics['mAP'] == 100.0

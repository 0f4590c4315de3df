"""ONNX export of the retrieval paths: files, manifest, parity with PyTorch."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn as nn

from mdrl_deploy import OrtSearcher, load_manifest
from mdrl_plugin.apis import PersonSearcher
from mdrl_plugin.export import ExportError, describe_test_pipeline
from mdrl_plugin.export.export import _export_graph, _traceable

QUERIES = ['a man in a red shirt', 'a woman with a blue bag and long hair',
           'black pants and white shoes', 'she has a hat',
           ' '.join(['a person with a bag'] * 8)]  # longer than max_length


@pytest.fixture(params=['global', 'global+local'])
def model(request, deploy_model, deploy_model_local):
    return deploy_model if request.param == 'global' else deploy_model_local


def test_export_folder_and_manifest(deploy_model_local):
    manifest = load_manifest(deploy_model_local['export'])
    with open(osp.join(deploy_model_local['export'], 'mdrl_export.json')) as f:
        raw = json.load(f)
    assert raw['opset'] >= 17
    image = dict(raw['image'])
    assert image.pop('mean') == pytest.approx([123.675, 116.28, 103.53])
    assert image.pop('std') == pytest.approx([58.395, 57.12, 57.375])
    assert image == dict(height=32, width=16, channel_order='rgb',
                         interpolation='bilinear')
    assert raw['text']['max_length'] == 16
    assert raw['feature'] == dict(dim=96, layout='global+local', num_groups=2,
                                  grouping='fixed')
    searcher = PersonSearcher(deploy_model_local['config'],
                              deploy_model_local['checkpoint'], progress=False)
    assert raw['fingerprint'] == {k: searcher.fingerprint[k]
                                  for k in raw['fingerprint']}
    assert raw['check']['max_abs_diff']['text'] <= 1e-4
    assert osp.isfile(osp.join(manifest['files']['tokenizer'],
                               'tokenizer.json'))


def test_graphs_have_dynamic_batch_and_length(deploy_model):
    import onnx
    files = load_manifest(deploy_model['export'])['files']
    text = onnx.load(files['text'])
    dims = {i.name: [d.dim_param or d.dim_value
                     for d in i.type.tensor_type.shape.dim]
            for i in text.graph.input}
    assert dims == {'input_ids': ['batch', 'length'],
                    'attention_mask': ['batch', 'length']}
    image = onnx.load(files['image'])
    assert [d.dim_param or d.dim_value for d in
            image.graph.input[0].type.tensor_type.shape.dim] == \
        ['batch', 3, 32, 16]
    assert text.opset_import[0].version >= 17


def test_features_and_rankings_match_pytorch(model, deploy_gallery):
    """Both graphs within 1e-4 of PyTorch; identical top-k lists."""
    torch_s = PersonSearcher(model['config'], model['checkpoint'],
                             batch_size=3, progress=False)
    ort_s = OrtSearcher(model['export'], batch_size=4, num_threads=1)
    t_index = torch_s.build_index(deploy_gallery)
    o_index = ort_s.build_index(deploy_gallery)
    assert o_index.paths == t_index.paths
    assert np.abs(o_index.features - t_index.features).max() < 1e-4
    with pytest.warns(UserWarning, match='tokens'):
        t_text = torch_s.encode_texts(QUERIES)
    with pytest.warns(UserWarning, match='tokens'):
        o_text = ort_s.encode_texts(QUERIES)
    # both searchers return NumPy from both encoders
    for out in (t_text, o_text, t_index.features, o_index.features):
        assert type(out) is np.ndarray and out.dtype == np.float32
    assert o_text.shape == t_text.shape
    assert np.abs(o_text - t_text).max() < 1e-4
    for single in QUERIES[:2]:  # batch of one: no padding at all
        np.testing.assert_allclose(ort_s.encode_texts(single),
                                   torch_s.encode_texts(single),
                                   atol=1e-4)
    t_hits = torch_s.search(QUERIES[:4], topk=10)
    o_hits = ort_s.search(QUERIES[:4], topk=10)
    assert [[h.path for h in q] for q in o_hits] == \
        [[h.path for h in q] for q in t_hits]
    for tq, oq in zip(t_hits, o_hits):
        np.testing.assert_allclose([h.score for h in oq],
                                   [h.score for h in tq], atol=1e-4)


def test_tokenizer_matches_the_model(deploy_model):
    torch_s = PersonSearcher(deploy_model['config'],
                             deploy_model['checkpoint'], progress=False)
    ort_s = OrtSearcher(deploy_model['export'])
    tok = torch_s.data_preprocessor.tokenize(QUERIES)
    mine = ort_s.tokenizer(QUERIES)
    np.testing.assert_array_equal(mine['input_ids'], tok['input_ids'].numpy())
    np.testing.assert_array_equal(mine['attention_mask'],
                                  tok['attention_mask'].numpy())
    assert ort_s.tokenizer.lengths(QUERIES) == \
        torch_s.data_preprocessor.text_lengths(QUERIES)


def test_onnx_threads_do_not_spin_between_runs(deploy_model):
    # spinning intra-op threads took the cores from NumPy's ranking: a
    # search at 100k images cost 48.5 ms instead of 30.3 ms
    ort_s = OrtSearcher(deploy_model['export'], num_threads=2)
    for session in (ort_s.text_session, ort_s.image_session):
        assert session.get_session_options().get_session_config_entry(
            'session.intra_op.allow_spinning') == '0'


def test_export_refuses_a_non_empty_folder(deploy_model):
    from mdrl_plugin.export import export_onnx
    with pytest.raises(FileExistsError, match='not empty'):
        export_onnx(deploy_model['config'], deploy_model['checkpoint'],
                    deploy_model['export'])


@pytest.mark.parametrize('step, message', [
    (dict(type='RandomFlip', prob=0.5), r'step 1 \(RandomFlip\) is not '
     'supported'),
    (dict(type='Resize', scale=(16, 32), keep_ratio=True),
     r'step 1 \(Resize\): the exported preprocessing repeats only '
     'keep_ratio=False'),
    (dict(type='Resize', scale=(16, 32), interpolation='bicubic'),
     "repeats only interpolation='bilinear'"),
    (dict(type='Resize', keep_ratio=False), r'needs a fixed size scale=\(W'),
    (dict(type='LoadImageFromFile', color_type='grayscale'),
     "repeats only color_type='color'"),
])
def test_unsupported_pipeline_names_the_transform(step, message):
    pipeline = [dict(type='LoadPersonImage'), step,
                dict(type='PackTextImageInputs')]
    with pytest.raises(ExportError, match=message):
        describe_test_pipeline(pipeline, bgr_to_rgb=True)


def test_pipeline_channel_order():
    pipe = [dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(16, 32), keep_ratio=False)]
    assert describe_test_pipeline(pipe, True) == dict(
        height=32, width=16, channel_order='rgb', interpolation='bilinear')
    assert describe_test_pipeline(pipe, False)['channel_order'] == 'bgr'
    pipe[0]['channel_order'] = 'rgb'
    assert describe_test_pipeline(pipe, False)['channel_order'] == 'rgb'


def test_unsupported_attention_names_the_module():
    from mdrl_plugin.models.necks import dll
    grouping = dll.group_tokens
    model = nn.Sequential()
    model.add_module('neck', nn.Module())
    model.neck.ok = nn.MultiheadAttention(8, 2, batch_first=True)
    model.neck.attn = nn.MultiheadAttention(8, 2, batch_first=False)
    with pytest.raises(ExportError, match="module 'neck.attn'"):
        with _traceable(model):
            pass
    # what was patched before the refusal is restored
    assert 'forward' not in vars(model.neck.ok)
    assert 'forward' not in vars(model.neck.attn)
    assert dll.group_tokens is grouping
    assert torch.backends.mha.get_fastpath_enabled()
    with _traceable(model.neck.ok):
        assert 'forward' in vars(model.neck.ok)
        assert not torch.backends.mha.get_fastpath_enabled()
        assert dll.group_tokens is not grouping
    assert 'forward' not in vars(model.neck.ok)
    assert dll.group_tokens is grouping


class _Unexportable(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Module()
        self.model.head = _Head()

    def forward(self, x):
        return self.model.head(x)


class _Head(nn.Module):
    def forward(self, x):
        return torch.linalg.eigvals(x).real


def test_unsupported_operator_names_the_module(tmp_path):
    with pytest.raises(ExportError) as info:
        _export_graph(_Unexportable(), [dict(x=torch.randn(2, 3, 3))],
                      str(tmp_path / 'x.onnx'), 18, 'image')
    msg = str(info.value)
    assert "module 'model.head'" in msg and 'eig' in msg


@pytest.mark.parametrize('num_groups', [1, 2, 3, 4])
def test_fixed_group_tokens_equals_dll_grouping(num_groups):
    from mdrl_plugin.export import fixed_group_tokens
    from mdrl_plugin.models.necks.dll import group_tokens
    torch.manual_seed(0)
    tokens = torch.randn(4, 7, 5)
    lengths = torch.tensor([7, 5, 1, 3])
    mask = torch.arange(7)[None] >= lengths[:, None]
    for pad in (mask, None):
        ref = group_tokens(tokens, pad, num_groups, shuffle=False)
        mine = fixed_group_tokens(tokens, pad, num_groups)
        torch.testing.assert_close(mine[0], ref[0], rtol=0, atol=0)
        assert torch.equal(mine[1], ref[1])
    with pytest.raises(ExportError, match='eval mode'):
        fixed_group_tokens(tokens, mask, num_groups, shuffle=True)

"""Pretrained weights: local files, Hugging Face ids, timm tags and URLs.

Hub ids resolve from a Hugging Face cache the tests lay out themselves in a
temporary HF_HOME, offline and with every connection refused (``offline_hub``).
"""
import logging
import os
import os.path as osp
from contextlib import contextmanager

import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from transformers import BertModel

from mdrl_plugin.models import (
    WeightsNotFoundError,
    WeightSource,
    check_weights,
    find_weights,
    hf_source,
    image_source,
)
from mdrl_plugin.registry import MODELS

from mdrl_test_utils import REPO_ROOT, folder_files, put_in_hub_cache, write_tiny_bert

CUHK = osp.join(REPO_ROOT, 'configs', 'mdrl_vit_bert_cuhk.py')


@contextmanager
def log_records():
    """Records logged to MMEngine's current logger."""
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def cache_timm_model(cache, tag, seed=0, **kwargs):
    """A random timm model saved as ``tag``'s weights in the hub cache."""
    torch.manual_seed(seed)
    model = timm.create_model(tag.split('.')[0], **kwargs)
    path = osp.join(osp.dirname(cache), f'{tag}.safetensors')
    os.makedirs(osp.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    put_in_hub_cache(cache, f'timm/{tag}', {'model.safetensors': path})
    return model


def test_cnn_encoder_loads_a_wrapped_ddp_checkpoint(tmp_path):
    torch.manual_seed(2)
    src = timm.create_model('resnet18', num_classes=10)
    path = tmp_path / 'resnet18.pth'
    # a DDP-trained checkpoint: `state_dict` wrapper, `module.` prefix
    torch.save({'state_dict': {f'module.{k}': v for k, v in src.state_dict().items()}},
               path)
    cnn = MODELS.build(dict(type='TimmCNNEncoder', arch='resnet18', pretrained=str(path)))
    for key, value in cnn.backbone.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key


def test_vit_encoder_loads_safetensors(tmp_path):
    torch.manual_seed(4)
    src = timm.create_model('vit_base_patch16_224', img_size=(64, 32), num_classes=0,
                            embed_dim=32, depth=1, num_heads=2)
    path = tmp_path / 'vit.safetensors'
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    vit = MODELS.build(dict(type='TimmVisionTransformer', img_size=(64, 32),
                            arch_kwargs=dict(embed_dim=32, depth=1, num_heads=2),
                            pretrained=str(path)))
    for key, value in src.state_dict().items():
        assert torch.equal(vit.vit.state_dict()[key], value), key


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'encoder.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError, match=r"(?s)timm 'resnet18' weights '.*other.pth' "
                       r'do not fit the model.*Missing key\(s\).*"conv1.weight".*'
                       r'Unexpected key\(s\) in state_dict: "encoder.weight"'):
        MODELS.build(dict(type='TimmCNNEncoder', arch='resnet18', pretrained=str(path)))


def test_former_cnn_encoder_checkpoints_still_load():
    """TimmCNNEncoder is BackboneAdapter now; its former keys `cnn.*` load."""
    torch.manual_seed(0)
    cfg = dict(type='TimmCNNEncoder', arch='test_resnet', out_channels=4)
    old = {k.replace('backbone.', 'cnn.', 1): v + 1
           for k, v in MODELS.build(cfg).state_dict().items()}
    assert 'cnn.conv1.0.weight' in old and 'proj.weight' in old
    model = torch.nn.ModuleDict(dict(image_encoder=MODELS.build(cfg)))
    model.load_state_dict({f'image_encoder.{k}': v for k, v in old.items()})
    assert torch.equal(model.image_encoder.backbone.conv1[0].weight,
                       old['cnn.conv1.0.weight'])


# ------------------------------------------------------------ hub ids, offline
@pytest.fixture(params=['HF_HUB_OFFLINE=1', 'no network'])
def hub(request, offline_hub, monkeypatch):
    """The empty cache, offline; or online mode with every connection refused
    (a cached id must not even try the network)."""
    if request.param == 'no network':
        from huggingface_hub import constants
        monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
        monkeypatch.delenv('HF_HUB_OFFLINE')
    return offline_hub


def test_bert_and_tokenizer_resolve_by_id_from_the_cache(hub, tmp_path):
    offline_hub = hub
    folder = write_tiny_bert(str(tmp_path / 'tiny'), seed=7)
    put_in_hub_cache(offline_hub, 'mdrl-tests/tiny-bert', folder_files(folder))
    encoder = MODELS.build(dict(type='BertTextEncoder',
                                pretrained='mdrl-tests/tiny-bert', num_lte_layers=0))
    reference = BertModel.from_pretrained(folder)
    for key, value in encoder.bert.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key
    pre = MODELS.build(dict(type='TextImageDataPreprocessor',
                            tokenizer='mdrl-tests/tiny-bert'))
    # [CLS]=2 a=5 man=8 in=11 red=15 [SEP]=3 in the tiny vocabulary
    assert pre.tokenize(['A man in red'])['input_ids'].tolist() == [[2, 5, 8, 11, 15, 3]]


def test_a_local_folder_wins_over_a_cached_id(offline_hub, tmp_path, monkeypatch):
    cached = write_tiny_bert(str(tmp_path / 'cached'), seed=1)
    put_in_hub_cache(offline_hub, 'bert-base-uncased', folder_files(cached))
    monkeypatch.chdir(tmp_path)
    write_tiny_bert(str(tmp_path / 'bert-base-uncased'), seed=2)
    assert hf_source('bert-base-uncased').kind == 'path'
    encoder = MODELS.build(dict(type='BertTextEncoder',
                                pretrained='bert-base-uncased', num_lte_layers=0))
    local = BertModel.from_pretrained(str(tmp_path / 'bert-base-uncased'))
    assert torch.equal(encoder.bert.embeddings.word_embeddings.weight,
                       local.embeddings.word_embeddings.weight)


def test_vit_loads_a_timm_tag_from_the_cache(hub):
    offline_hub = hub
    src = cache_timm_model(offline_hub, 'test_vit.r160_in1k')
    vit = MODELS.build(dict(type='TimmVisionTransformer', arch='test_vit',
                            pretrained='test_vit.r160_in1k', img_size=(32, 16),
                            drop_path_rate=0.0))
    assert vit.vit.pos_embed.shape == (1, 1 + 2 * 1, src.embed_dim)  # resampled
    for key, value in vit.vit.state_dict().items():
        if key != 'pos_embed':
            assert torch.equal(value, src.state_dict()[key]), key


def test_adapter_loads_the_default_timm_tag_with_timms_loader(offline_hub):
    src = cache_timm_model(offline_hub, 'test_resnet.r160_in1k', seed=3)
    enc = MODELS.build(dict(type='BackboneAdapter', timm_model='test_resnet',
                            timm_checkpoint='timm', probe_size=(64, 32)))
    for key, value in enc.backbone.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key


def test_urls_resolve_from_the_torch_hub_cache(hub, tmp_path):
    url = 'https://example.invalid/weights/test_resnet-0123.pth'
    folder = tmp_path / 'torch_home' / 'hub' / 'checkpoints'
    folder.mkdir(parents=True)
    torch.manual_seed(4)
    src = timm.create_model('test_resnet', num_classes=0)
    torch.save(src.state_dict(), folder / 'test_resnet-0123.pth')
    cnn = MODELS.build(dict(type='TimmCNNEncoder', arch='test_resnet', pretrained=url))
    for key, value in cnn.backbone.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key
    # MMEngine's Pretrained init reads the same cache
    torch.save({'state_dict': cnn.state_dict()}, folder / 'mmengine_style.pth')
    cfg = dict(type='TimmCNNEncoder', arch='test_resnet', init_cfg=dict(
        type='Pretrained', checkpoint='https://example.invalid/mmengine_style.pth'))
    torch.manual_seed(5)
    enc = MODELS.build(cfg)
    enc.init_weights()
    for key, value in enc.backbone.state_dict().items():
        assert torch.equal(value, src.state_dict()[key]), key
    check_weights(Config(dict(model=dict(type='MDRL', image_encoder=cfg))))


def test_a_fetched_url_lands_where_mmengine_looks(offline_hub, tmp_path):
    """fetch() downloads into the torch hub cache (a file:// URL here)."""
    torch.save({'w': torch.arange(3)}, tmp_path / 'w-01.pth')
    src = WeightSource('image encoder', 'w', 'url', url=(tmp_path / 'w-01.pth').as_uri())
    assert src.locate() is None
    path = src.fetch()
    assert path == str(tmp_path / 'torch_home' / 'hub' / 'checkpoints' / 'w-01.pth')
    assert src.locate() == path
    from mmengine.runner.checkpoint import CheckpointLoader
    loaded = CheckpointLoader.load_checkpoint('https://example.invalid/a/w-01.pth')
    assert torch.equal(loaded['w'], torch.arange(3))
    # an https URL is looked at first, with a time limit (torch hub has none)
    with pytest.raises(OSError, match='the tests never reach the network'):
        WeightSource('image encoder', 'v', 'url', url='https://x.invalid/v.pth').fetch()


# ------------------------------------------------------------ what is missing
def expected_message(offline_hub, tmp_path):
    """The message for the CUHK-PEDES config with empty caches, offline."""
    return (
        f'3 pretrained weight(s) of {CUHK} missing (offline: HF_HUB_OFFLINE=1):\n'
        "  - tokenizer (model.data_preprocessor.tokenizer = 'bert-base-uncased'): "
        f"looked in the local path '{tmp_path}/bert-base-uncased' and the "
        f'Hugging Face cache (HF_HOME): {offline_hub}/models--bert-base-uncased\n'
        "  - image encoder (model.image_encoder.pretrained = "
        "'vit_base_patch16_224.orig_in21k_ft_in1k'): looked in the Hugging Face "
        f'cache (HF_HOME): {offline_hub}/'
        'models--timm--vit_base_patch16_224.orig_in21k_ft_in1k\n'
        "  - text encoder (model.text_encoder.pretrained = 'bert-base-uncased'): "
        f"looked in the local path '{tmp_path}/bert-base-uncased' and the "
        f'Hugging Face cache (HF_HOME): {offline_hub}/models--bert-base-uncased\n'
        'Fetch them on a machine with internet access, with the same HF_HOME and '
        'TORCH_HOME (e.g. a login node and a shared file system): '
        f'python tools/fetch_weights.py {CUHK}')


def test_uncached_ids_give_one_message_listing_all(offline_hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(CUHK)
    with pytest.raises(WeightsNotFoundError) as info:
        check_weights(cfg)
    assert str(info.value) == expected_message(offline_hub, tmp_path)
    # the same text from the loaders, one weight at a time
    with pytest.raises(WeightsNotFoundError, match='1 pretrained weight.s. missing'):
        MODELS.build(dict(type='BertTextEncoder', pretrained='bert-base-uncased'))


def test_without_network_one_download_is_tried(offline_hub, tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.delenv('HF_HUB_OFFLINE')
    monkeypatch.chdir(tmp_path)
    tried = []
    fetch = WeightSource.fetch

    def counted(self):
        tried.append(self.name)
        return fetch(self)

    monkeypatch.setattr(WeightSource, 'fetch', counted)
    with pytest.raises(WeightsNotFoundError) as info:
        check_weights(Config.fromfile(CUHK))
    assert tried == ['bert-base-uncased']  # the others are not tried
    first = str(info.value).splitlines()[0]
    assert first.startswith(f'3 pretrained weight(s) of {CUHK} missing (the '
                            'download failed: '), first
    assert str(info.value).endswith(f'python tools/fetch_weights.py {CUHK}')


@pytest.mark.parametrize('name,kind', [
    ('bert-base-uncased', 'hf'), ('google-bert/bert-base-uncased', 'hf'),
    ('/abs/bert', 'path'), ('./bert', 'path'), ('a/b/c', 'path'),
    ('tests/nowhere', 'hf')])  # transformers' rule: no local path, a valid id
def test_hf_names_and_paths(name, kind, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert hf_source(name).kind == kind


def test_image_names():
    src = image_source('timm', 'vit_base_patch16_224')
    assert (src.kind, src.repo_id) == ('timm', 'timm/vit_base_patch16_224.augreg2_in21k_ft_in1k')
    assert image_source('https://x.org/w.pth', 'resnet50').kind == 'url'
    assert image_source('w.pth', 'resnet50').kind == 'path'
    with pytest.raises(ValueError, match="'resnet50.tv_in1k' is a timm tag of 'resnet50', "
                       "but the architecture is 'resnet18'"):
        image_source('resnet50.tv_in1k', 'resnet18', key='model.image_encoder.pretrained')
    with pytest.raises(ValueError, match='Invalid pretrained tag .nope.*Known tags: '
                       'test_vit.r160_in1k'):
        image_source('test_vit.nope', 'test_vit')


def test_shipped_configs_name_hub_weights():
    names = {(s.role, s.kind, s.name) for s in find_weights(Config.fromfile(CUHK))}
    assert names == {('tokenizer', 'hf', 'bert-base-uncased'),
                     ('text encoder', 'hf', 'bert-base-uncased'),
                     ('image encoder', 'timm', 'vit_base_patch16_224.orig_in21k_ft_in1k')}
    resnet = find_weights(Config.fromfile(osp.join(REPO_ROOT, 'configs',
                                                   'mdrl_resnet50_bert_cuhk.py')))
    assert resnet[1].repo_id == 'timm/resnet50.tv_in1k'


def test_init_lists_are_searched_and_keyed_as_cfg_options_write_them():
    inits = [dict(type='Kaiming'), dict(type='Pretrained', checkpoint='https://x.invalid/w.pth'),
             dict(type='Pretrained', checkpoint='torchvision://resnet50')]  # MMEngine's
    cfg = Config(dict(model=dict(type='MDRL', image_encoder=dict(
        type='TimmCNNEncoder', arch='test_resnet', init_cfg=inits))))
    assert [(s.key, s.kind, s.url) for s in find_weights(cfg)] == [
        ('model.image_encoder.init_cfg.1.checkpoint', 'url', 'https://x.invalid/w.pth')]


# ------------------------------------------------------------ strict loading
def test_pretrained_weights_that_miss_keys_are_refused(tmp_path):
    """timm's strict load: a key the checkpoint lacks is an error naming the
    file and the key (MMEngine's Pretrained init stays non-strict: a WARNING)."""
    torch.manual_seed(6)
    state = timm.create_model('test_resnet', num_classes=0).state_dict()
    del state['conv1.0.weight']
    path = str(tmp_path / 'partial.pth')
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"(?s)'.*partial.pth' do not fit the model"
                       r'.*Missing key\(s\) in state_dict: "conv1.0.weight"\. *$'):
        MODELS.build(dict(type='TimmCNNEncoder', arch='test_resnet', pretrained=path))
    # a former TimmCNNEncoder's keys (`cnn.`), through MMEngine's loader
    torch.save({'state_dict': {f'cnn.{k}': v for k, v in state.items()}}, path)
    enc = MODELS.build(dict(type='TimmCNNEncoder', arch='test_resnet',
                            init_cfg=dict(type='Pretrained', checkpoint=path)))
    with log_records() as records:
        enc.init_weights()
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any('missing keys in source state_dict: backbone.conv1.0.weight\n' in w
               for w in warnings), warnings
    assert torch.equal(enc.backbone.conv1[1].weight, state['conv1.1.weight'])


def test_a_strided_vit_resamples_the_loaded_position_embeddings(tmp_path):
    torch.manual_seed(7)
    tiny = dict(embed_dim=32, depth=1, num_heads=2)
    src = timm.create_model('vit_base_patch16_224', img_size=32, num_classes=0, **tiny)
    path = str(tmp_path / 'vit.pth')
    torch.save(src.state_dict(), path)
    cfg = dict(type='TimmVisionTransformer', img_size=(64, 32), arch_kwargs=tiny,
               pretrained=path)
    plain = MODELS.build(cfg).vit.pos_embed  # 2x2 grid resampled to 4x2 by timm
    strided = MODELS.build(dict(cfg, stride=8)).vit.pos_embed  # then to 7x3
    assert strided.shape == (1, 1 + 7 * 3, 32)
    assert torch.equal(strided[:, 0], src.pos_embed[:, 0])
    torch.testing.assert_close(
        strided, resample_abs_pos_embed(plain, (7, 3), (4, 2), num_prefix_tokens=1))


# ------------------------------------------------------------ fetching
class FakeHub:
    """huggingface_hub's model_info and snapshot_download, over a folder of
    repos: what is asked for is laid out in the cache as a download would."""

    def __init__(self, cache, repos):
        self.cache, self.repos, self.calls = cache, repos, []

    def model_info(self, api, repo_id, revision=None, timeout=None):
        from types import SimpleNamespace
        self.calls.append(('model_info', repo_id, timeout))
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=f)
                                         for f in self.repos[repo_id]])

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None):
        from fnmatch import fnmatch
        self.calls.append(('snapshot_download', repo_id, allow_patterns))
        files = {f: p for f, p in self.repos[repo_id].items()
                 if any(fnmatch(f, pattern) for pattern in allow_patterns)}
        return put_in_hub_cache(self.cache, repo_id, files)


def test_fetch_takes_only_the_files_the_loaders_read(offline_hub, tmp_path,
                                                     monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.delenv('HF_HUB_OFFLINE')
    bert = folder_files(write_tiny_bert(str(tmp_path / 'bert')))
    torch.save({}, tmp_path / 'pytorch_model.bin')
    vit = {'config.json': bert['config.json'],
           'pytorch_model.bin': str(tmp_path / 'pytorch_model.bin')}
    hub = FakeHub(offline_hub, {'org/tiny-bert': dict(
        bert, **{'tf_model.h5': bert['config.json']}), 'timm/test_vit.r160_in1k': vit})
    monkeypatch.setattr(huggingface_hub.HfApi, 'model_info',
                        lambda api, *a, **k: hub.model_info(api, *a, **k))
    monkeypatch.setattr(huggingface_hub, 'snapshot_download', hub.snapshot_download)
    tokenizer = hf_source('org/tiny-bert', 'tokenizer')
    assert tokenizer.locate() is None
    folder = tokenizer.resolve()
    assert sorted(os.listdir(folder)) == sorted(
        f for f in bert if f.endswith(('.json', '.txt')))  # no weights
    assert hf_source('org/tiny-bert').locate() is None  # the model's are missing
    assert hf_source('org/tiny-bert').resolve() == folder
    assert 'model.safetensors' in os.listdir(folder) and 'tf_model.h5' not in os.listdir(
        folder)
    image = image_source('test_vit.r160_in1k', 'test_vit')
    assert image.resolve().endswith('/pytorch_model.bin')  # no safetensors there
    assert hub.calls == [
        ('model_info', 'org/tiny-bert', constants.HF_HUB_ETAG_TIMEOUT),
        ('snapshot_download', 'org/tiny-bert', ['*.json', '*.txt', '*.model']),
        ('model_info', 'org/tiny-bert', constants.HF_HUB_ETAG_TIMEOUT),
        ('snapshot_download', 'org/tiny-bert',
         ['*.json', '*.txt', '*.model', 'model*.safetensors']),
        ('model_info', 'timm/test_vit.r160_in1k', constants.HF_HUB_ETAG_TIMEOUT),
        ('snapshot_download', 'timm/test_vit.r160_in1k', ['pytorch_model.bin'])]

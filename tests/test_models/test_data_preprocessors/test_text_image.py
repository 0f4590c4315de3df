import pytest
import torch
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import MODELS


def build(bert_dir, **kwargs):
    cfg = dict(type='TextImageDataPreprocessor', tokenizer=bert_dir, max_length=6,
               mean=[10, 20, 30], std=[2, 4, 5])
    cfg.update(kwargs)
    return MODELS.build(cfg)


def test_images_are_flipped_to_rgb_and_normalised(tiny_bert_dir):
    pre = build(tiny_bert_dir)
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    img[0], img[1], img[2] = 50, 60, 70  # B, G, R
    out = pre(dict(inputs=[img], data_samples=[BaseDataElement(metainfo=dict(text='a man'))]))
    images = out['inputs']['images']
    # RGB = (70, 60, 50) -> ((70-10)/2, (60-20)/4, (50-30)/5)
    assert images[0, :, 0, 0].tolist() == [30.0, 10.0, 4.0]


def test_training_and_evaluation_captions_are_tokenised_in_order(tiny_bert_dir):
    pre = build(tiny_bert_dir)
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    samples = [BaseDataElement(metainfo=dict(texts=['a man', 'red shirt and blue pants on'])),
               BaseDataElement(metainfo=dict(texts=[])),
               BaseDataElement(metainfo=dict(texts=['woman']))]
    out = pre(dict(inputs=[img] * 3, data_samples=samples))
    ids, mask = out['inputs']['input_ids'], out['inputs']['attention_mask']
    tok = pre.tokenizer
    # [CLS]=2, [SEP]=3, [PAD]=0 in the tiny vocabulary; truncated to max_length 6
    assert ids.tolist() == [
        [2, tok.convert_tokens_to_ids('a'), tok.convert_tokens_to_ids('man'), 3, 0, 0],
        [2] + tok.convert_tokens_to_ids(['red', 'shirt', 'and', 'blue']) + [3],
        [2, tok.convert_tokens_to_ids('woman'), 3, 0, 0, 0]]
    assert mask.tolist()[0] == [1, 1, 1, 1, 0, 0]
    assert pre.text_lengths(['red shirt and blue pants on']) == [8]


def test_max_length_padding(tiny_bert_dir):
    pre = build(tiny_bert_dir, padding='max_length')
    out = pre.tokenize(['a man'])
    assert out['input_ids'].shape == (1, 6)
    assert pre.tokenize([])['input_ids'].shape == (0, 2)


def test_mixed_image_sizes_are_rejected(tiny_bert_dir):
    pre = build(tiny_bert_dir)
    with pytest.raises(ValueError, match='differ in size'):
        pre.preprocess_images([torch.zeros(3, 2, 2), torch.zeros(3, 4, 2)])


def test_missing_tokenizer_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='Tokenizer folder .*nowhere.* does not exist'):
        build(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='holds no usable tokenizer'):
        build(str(tmp_path / 'empty'))

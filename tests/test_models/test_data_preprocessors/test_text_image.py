import pytest
import torch
from mmengine.structures import BaseDataElement

from mdrl_plugin.models import WeightsNotFoundError
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
    with pytest.raises(WeightsNotFoundError, match=r"(?s)1 pretrained weight.s. missing:\n"
                       r"  - tokenizer \('.*nowhere'\): looked in the local path .*"
                       'Put the files at the local paths'):
        build(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='holds no usable tokenizer'):
        build(str(tmp_path / 'empty'))



class _Recorder:
    """A Rust tokenizer that records the calls reconfiguring it."""

    SETTERS = ('enable_truncation', 'no_truncation', 'enable_padding',
               'no_padding')

    def __init__(self, inner, calls):
        self._inner, self._calls = inner, calls

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if name not in self.SETTERS:
            return attr

        def setter(*args, **kwargs):
            self._calls.append(name)
            return attr(*args, **kwargs)
        return setter


@pytest.mark.parametrize('padding', ['longest', 'max_length'])
def test_encoding_never_reconfigures_a_shared_tokenizer(tiny_bert_dir,
                                                        padding, monkeypatch):
    # A fast tokenizer's truncation/padding is state shared by all threads
    # (the search server's): reconfiguring it per call, even to the same
    # values, is the race behind "Already borrowed". Deterministic guard:
    # after set-up, no call of any length reconfigures any Rust tokenizer.
    import tokenizers
    calls = []
    real = tokenizers.Tokenizer
    monkeypatch.setattr(tokenizers, 'Tokenizer', type('Tokenizer', (), dict(
        from_str=staticmethod(lambda s: _Recorder(real.from_str(s), calls)),
        from_file=staticmethod(lambda f: _Recorder(real.from_file(f),
                                                   calls)))))
    pre = build(tiny_bert_dir, padding=padding)
    assert pre.tokenizer.is_fast  # the server's case
    hf = pre.tokenizer
    hf._tokenizer = _Recorder(hf._tokenizer, calls)  # HF's Rust tokenizer
    pre.tokenize(['a man'])  # set-up: the thread-safe copy, on first use
    copy = pre._fast_tokenizer()
    rust = [hf.backend_tokenizer] + [
        t for t in vars(copy).values() if isinstance(t, _Recorder)]
    assert len(rust) >= 2 and rust[0].truncation is None
    states = [(t.truncation, t.padding) for t in rust]
    calls.clear()
    long = ' '.join(['red shirt and blue pants on'] * 4)  # over max_length
    img = torch.zeros(3, 2, 2, dtype=torch.uint8)
    for texts in (['a man'], [long], ['woman', long, 'a'], [long, 'a man']):
        for call in (pre.tokenize, pre.token_ids, pre.text_lengths,
                     lambda t: pre(dict(inputs=[img], data_samples=[
                         BaseDataElement(metainfo=dict(texts=t))]))):
            call(texts)
            assert calls == [], (call, texts)
            assert [(t.truncation, t.padding) for t in rust] == states
    assert pre._fast_tokenizer() is copy  # made once, not per call
    ids = pre.token_ids([long])[0]
    assert len(ids) == 6 and ids[-1] == 3  # still truncated, [SEP] last
    # the guard sees the bug class: HF's own call reconfigures its tokenizer
    hf(['a man'], truncation=True, max_length=6)
    assert 'enable_truncation' in calls

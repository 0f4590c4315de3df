"""Shared fixtures: tiny Hugging Face BERT folders written by the tests themselves."""
import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

#: A small word list that covers the captions the tests write.
TINY_VOCAB = [
    '[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'a', 'an', 'the', 'man',
    'woman', 'person', 'in', 'with', 'and', 'wearing', 'red', 'blue', 'green',
    'black', 'white', 'yellow', 'shirt', 'coat', 'pants', 'skirt', 'shoes',
    'bag', 'hat', 'carrying', 'is', 'he', 'she', 'has', 'short', 'long',
    'hair', '.', ',', 'walking', 'jacket', 'dress', 'backpack', 'of', 'on'
]


def write_tiny_bert(folder: str, hidden_size: int = 32, num_layers: int = 2,
                    seed: int = 0) -> str:
    """Write a randomly initialised BERT and its tokenizer in HF format.

    Args:
        folder: Destination folder (created).
        hidden_size: BERT width.
        num_layers: Number of BERT layers.
        seed: Seed of the random weights.

    Returns:
        The folder, loadable with ``from_pretrained(folder)``.
    """
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    os.makedirs(folder, exist_ok=True)
    vocab_file = os.path.join(folder, 'vocab.txt')
    with open(vocab_file, 'w') as f:
        f.write('\n'.join(TINY_VOCAB) + '\n')
    BertTokenizer(vocab_file, do_lower_case=True).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(TINY_VOCAB), hidden_size=hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=2,
        intermediate_size=hidden_size * 2, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope='session')
def tiny_bert_dir(tmp_path_factory) -> str:
    """Folder of a tiny random BERT (hidden 32, 2 layers) with a tokenizer."""
    return write_tiny_bert(str(tmp_path_factory.mktemp('tiny_bert')))


def tiny_mdrl_cfg(bert_dir: str, num_classes: int = 4, img_size=(32, 16),
                  **overrides) -> dict:
    """Config of a tiny but complete MDRL (ViT, frozen BERT + LTE, DLL, CIM).

    Args:
        bert_dir: Folder from :func:`write_tiny_bert`.
        num_classes: Number of training identities.
        img_size: ``(H, W)``; patches are 8x8.
        **overrides: Top-level keys of the model config to replace.

    Returns:
        A model config dict for ``MODELS.build``.
    """
    cfg = dict(
        type='MDRL',
        num_classes=num_classes,
        data_preprocessor=dict(
            type='TextImageDataPreprocessor', tokenizer=bert_dir, max_length=16),
        image_encoder=dict(
            type='TimmVisionTransformer', arch='vit_base_patch16_224',
            img_size=img_size, patch_size=8, drop_path_rate=0.0,
            arch_kwargs=dict(embed_dim=32, depth=1, num_heads=2)),
        text_encoder=dict(
            type='BertTextEncoder', pretrained=bert_dir, num_lte_layers=1,
            num_heads=2, dropout=0.0),
        image_local=dict(type='DisorderedLocalLearning', num_groups=2, num_heads=2),
        cross_modal=dict(type='CrossModalInteraction', num_layers=1, num_heads=2))
    cfg.update(overrides)
    return cfg


@pytest.fixture
def tiny_mdrl(tiny_bert_dir):
    """A freshly built tiny MDRL model (seeded)."""
    import torch

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(tiny_mdrl_cfg(tiny_bert_dir))

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

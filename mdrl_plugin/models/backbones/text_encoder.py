"""Frozen BERT followed by learnable transformer encoder layers (LTE)."""
import os
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS
from ..utils import build_transformer_encoder, masked_transformer

__all__ = ['BertTextEncoder']


def load_bert(pretrained: Optional[str], bert_config: Optional[dict]) -> nn.Module:
    """Load a Hugging Face BERT from a local folder or build it from a config.

    Args:
        pretrained: Local folder holding ``config.json`` and the weights.
        bert_config: ``transformers.BertConfig`` arguments (random weights).

    Returns:
        A ``transformers.BertModel``.
    """
    from transformers import BertConfig, BertModel
    if (pretrained is None) == (bert_config is None):
        raise ValueError('BertTextEncoder needs exactly one of `pretrained` '
                         '(a local model folder) and `bert_config`')
    if bert_config is not None:
        bert = BertModel(BertConfig(**bert_config))
        bert.pooler = None  # unused: features come from the token outputs
        return bert
    if not os.path.isdir(pretrained):
        raise FileNotFoundError(
            f'BERT folder {pretrained!r} does not exist. Put a Hugging Face BERT '
            'model folder there (config.json, model.safetensors or '
            'pytorch_model.bin, vocab.txt), e.g. one saved with '
            "BertModel.from_pretrained('bert-base-uncased').save_pretrained(path) "
            'on a machine with internet access, and set its path in the config.')
    if not os.path.isfile(os.path.join(pretrained, 'config.json')):
        raise FileNotFoundError(
            f'BERT folder {pretrained!r} has no config.json: it is not a Hugging '
            'Face model folder.')
    # float32 whatever the stored dtype (fp16 exports would break the LTE)
    bert = BertModel.from_pretrained(pretrained, local_files_only=True).float()
    bert.pooler = None  # unused: features come from the token outputs
    return bert


@MODELS.register_module()
class BertTextEncoder(BaseModule):
    """Text branch: frozen BERT, then learnable transformer encoder layers.

    The [cls] output of the LTE stack is the global text feature
    :math:`f_g^T`; the other outputs (M tokens, [SEP] included) form the text
    token sequence. Padding is masked in every LTE attention.

    Args:
        pretrained: Local Hugging Face BERT folder (e.g. bert-base-uncased).
        bert_config: Instead of ``pretrained``: ``BertConfig`` arguments for a
            randomly initialised BERT (tests, ablations).
        frozen: Freeze BERT (no gradients, dropout off, no autograd graph).
            Defaults to True, as in the paper.
        num_lte_layers: Number of learnable transformer encoder layers after
            BERT (0 disables them). Defaults to 2.
        num_heads: LTE attention heads (default: width // 64, at least 1).
        mlp_ratio: LTE MLP ratio.
        dropout: LTE dropout.
        out_channels: If set, a linear projection of all outputs to this width.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 pretrained: Optional[str] = None,
                 bert_config: Optional[dict] = None,
                 frozen: bool = True,
                 num_lte_layers: int = 2,
                 num_heads: Optional[int] = None,
                 mlp_ratio: float = 4.0,
                 dropout: float = 0.1,
                 out_channels: Optional[int] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.bert = load_bert(pretrained, bert_config)
        self.frozen = frozen
        width = self.bert.config.hidden_size
        if frozen:
            self.bert.requires_grad_(False)
            self.bert.eval()
        self.lte = None
        if num_lte_layers > 0:
            self.lte = build_transformer_encoder(
                width, num_lte_layers, num_heads or max(1, width // 64),
                mlp_ratio, dropout)
        self.proj = nn.Linear(width, out_channels) if out_channels else nn.Identity()
        self.embed_dims = width
        self.out_channels = out_channels or width

    def train(self, mode: bool = True) -> 'BertTextEncoder':
        """Set train mode, keeping a frozen BERT in eval mode (dropout off)."""
        super().train(mode)
        if self.frozen:
            self.bert.eval()
        return self

    def init_weights(self) -> None:
        """Never re-initialise BERT (its weights are loaded at construction)."""
        if self.init_cfg is not None:
            super().init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode tokenised texts.

        Args:
            input_ids: ``[T, L]`` token ids starting with [CLS].
            attention_mask: ``[T, L]``, 1 for real tokens, 0 for padding.

        Returns:
            tuple: global feature ``[T, C]``, token sequence ``[T, L-1, C]``
            and its padding mask ``[T, L-1]`` (bool, True = padding).
        """
        if self.frozen:
            with torch.no_grad():
                hidden = self.bert(
                    input_ids=input_ids,
                    attention_mask=attention_mask).last_hidden_state
        else:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        padding_mask = attention_mask == 0
        if self.lte is not None:
            hidden = masked_transformer(self.lte, hidden, padding_mask)
        hidden = self.proj(hidden)
        return hidden[:, 0], hidden[:, 1:], padding_mask[:, 1:]

"""Frozen BERT followed by learnable transformer encoder layers (LTE)."""
import json
import logging
import warnings
from typing import Dict, List, Optional, Protocol, Sequence, Set, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

from mdrl_plugin.registry import MODELS

from ..utils import build_transformer_encoder, masked_transformer
from ..weights import hf_source

__all__ = ['BertTextEncoder']


def load_bert(pretrained: Optional[str],
              bert_config: Optional[dict]) -> nn.Module:
    """Load a Hugging Face BERT from a local folder or a hub id, or build one.

    Args:
        pretrained: A local model folder or a Hugging Face id (a folder that
            exists wins; an id not cached is fetched unless offline).
        bert_config: ``transformers.BertConfig`` arguments (random weights).

    Returns:
        A ``transformers.BertModel``.

    Raises:
        WeightsNotFoundError: A missing folder, or an id that is not cached
            and cannot be fetched.
    """
    from transformers import BertConfig, BertModel
    if (pretrained is None) == (bert_config is None):
        raise ValueError(
            'BertTextEncoder needs exactly one of `pretrained` '
            '(a model folder or Hugging Face id) and `bert_config`')
    if bert_config is not None:
        bert = BertModel(BertConfig(**bert_config))
    else:
        hf_source(pretrained, 'text encoder').resolve()  # or one clear error
        # float32 whatever the stored dtype (fp16 exports would break the LTE)
        bert = BertModel.from_pretrained(pretrained,
                                         local_files_only=True).float()
    bert.pooler = None  # unused: features come from the token outputs
    return bert


class TokenFeatureLookup(Protocol):
    """What :class:`BertTextEncoder` needs from an attached token cache."""

    #: the numeric mode its rows were computed in (one cache per mode)
    mode: dict
    #: dtype of BERT's live outputs in that mode
    dtype: torch.dtype

    def mismatch(self, device: torch.device) -> Optional[str]:
        """None if the cache may serve a forward on ``device`` now, else
        why not."""

    def gather(self, seqs: Sequence[np.ndarray]
               ) -> Tuple[np.ndarray, np.ndarray]:
        """Found (bool ``[len(seqs)]``) and the found sequences' rows,
        concatenated in order, for token-id sequences (real tokens only)."""


def _is_exporting() -> bool:
    return torch.jit.is_tracing() or torch.jit.is_scripting() or (
        torch.onnx.is_in_onnx_export())


@MODELS.register_module()
class BertTextEncoder(BaseModule):
    """Text branch: frozen BERT, then learnable transformer encoder layers.

    The [cls] output of the LTE stack is the global text feature
    :math:`f_g^T`; the other outputs (M tokens, [SEP] included) form the text
    token sequence. Padding is masked in every LTE attention.

    A frozen BERT runs each caption right-padded to the next multiple of
    ``pad_to_multiple_of`` tokens, so its outputs do not depend on the batch
    and a precomputed cache (:meth:`attach_text_cache`, built by
    ``FrozenTextCacheHook``) gives bit-identical features (docs/models.md,
    "Frozen-text cache (FrozenTextCacheHook)"). Export and tracing skip both.

    Args:
        pretrained: Hugging Face BERT: a local model folder or a hub id
            (e.g. ``'bert-base-uncased'``), see :func:`load_bert`.
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
        project_first: Apply the ``out_channels`` projection to BERT's
            outputs before the LTE instead of after it, so that the LTE runs
            at ``out_channels`` width (cheaper when BERT is wider). Defaults
            to False (LTE at BERT's width, as in the paper).
        max_length: Longest token length of the frozen BERT's input, at least
            the data preprocessor's ``max_length``. Defaults to 64.
        pad_to_multiple_of: Canonical padding step of a frozen BERT's input.
            Defaults to 8.
        with_cp: Activation checkpointing of the LTE layers in training (not
            of BERT). Defaults to False.
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
                 project_first: bool = False,
                 max_length: int = 64,
                 pad_to_multiple_of: int = 8,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.bert = load_bert(pretrained, bert_config)
        self.frozen = frozen
        if max_length > self.bert.config.max_position_embeddings:
            raise ValueError(
                f'BertTextEncoder(max_length={max_length}) exceeds the '
                "BERT's max_position_embeddings="
                f'{self.bert.config.max_position_embeddings}')
        self.max_length = max_length
        if pad_to_multiple_of < 1:
            raise ValueError(
                'BertTextEncoder: pad_to_multiple_of must be >= 1, '
                f'got {pad_to_multiple_of}')
        self.pad_to_multiple_of = pad_to_multiple_of
        self.text_caches: Dict[str, TokenFeatureLookup] = {}
        self._cache_guard: List[Tuple[torch.Tensor, int]] = []
        self._cache_notes: Set[str] = set()
        self.cache_stats = dict(hits=0, misses=0)
        width = self.bert.config.hidden_size
        if frozen:
            self.bert.requires_grad_(False)
            self.bert.eval()
        if project_first and not out_channels:
            raise ValueError('BertTextEncoder(project_first=True) needs '
                             'out_channels')
        self.project_first = project_first
        self.with_cp = with_cp
        lte_width = out_channels if project_first else width
        self.lte = build_transformer_encoder(
            lte_width, num_lte_layers, num_heads or max(1, lte_width // 64),
            mlp_ratio, dropout) if num_lte_layers > 0 else None
        self.proj = (nn.Linear(width, out_channels) if out_channels
                     else nn.Identity())
        self.embed_dims = width
        self.out_channels = out_channels or width

    def train(self, mode: bool = True) -> 'BertTextEncoder':
        """Set train mode, keeping a frozen BERT in eval mode (dropout off)."""
        super().train(mode)
        if self.frozen:
            self.bert.eval()
        return self

    def init_weights(self) -> None:
        """Never re-initialise BERT (loaded at construction)."""
        if self.init_cfg is not None:
            super().init_weights()

    # ------------------------------------------------------------ frozen BERT
    @torch.no_grad()
    def frozen_bert_tokens(self, input_ids: torch.Tensor,
                           attention_mask: torch.Tensor) -> torch.Tensor:
        """Frozen BERT's token outputs, computed in the canonical shape.

        Args:
            input_ids: ``[T, L]`` token ids, ``L <= max_length``.
            attention_mask: ``[T, L]``, 1 for real tokens, 0 for padding.

        Returns:
            ``[T, L, D]`` float tensor, 0 at padding. Each row depends only on
            the row's real tokens (and their positions), not on the batch.
        """
        T, L = input_ids.shape
        if L > self.max_length:
            raise ValueError(
                f'BertTextEncoder got captions of {L} tokens but its '
                f'max_length is {self.max_length}: set '
                'model.text_encoder.max_length to at least the data '
                "preprocessor's max_length")
        if _is_exporting():  # dynamic shapes: no canonical padding
            hidden = self.bert(input_ids=input_ids,
                               attention_mask=attention_mask).last_hidden_state
            return hidden * attention_mask[..., None].to(hidden.dtype)
        real = attention_mask.bool()
        ids = input_ids.masked_fill(~real, 0)
        # canonical width of each row: its real tokens rounded up
        ends = (real * torch.arange(1, L + 1, device=real.device)).amax(1)
        step = self.pad_to_multiple_of
        widths = ((ends + step - 1) // step * step).clamp(step,
                                                          self.max_length)
        hidden = None
        for width in widths.unique().tolist():
            rows = (widths == width).nonzero().flatten()
            keep = min(width, L)
            out = self.bert(
                input_ids=F.pad(ids[rows, :keep], (0, width - keep)),
                attention_mask=F.pad(real[rows, :keep].long(),
                                     (0, width - keep))
            ).last_hidden_state
            if hidden is None:
                hidden = out.new_zeros(T, L, out.shape[-1])
            hidden[rows, :keep] = out[:, :keep]
        if hidden is None:  # no captions
            return input_ids.new_zeros(T, L, self.bert.config.hidden_size,
                                       dtype=torch.float)
        return hidden.masked_fill(~real[..., None], 0)

    def attach_text_cache(self, cache: Optional[TokenFeatureLookup]) -> None:
        """Serve the frozen BERT's outputs from ``cache`` (None detaches all).

        The cache holds :meth:`frozen_bert_tokens` outputs of BERT's current
        weights and serves forwards in its numeric mode only (others run live,
        logged once). A later in-place change of BERT's weights detaches all
        caches at the next forward, with a warning.

        Args:
            cache: A :class:`TokenFeatureLookup`.
        """
        if cache is None:
            self.text_caches = {}
        elif not self.frozen:
            raise ValueError('A text cache needs a frozen BERT (frozen=True)')
        else:
            self.text_cache_is_valid()  # drop caches of older weights first
            self.text_caches[json.dumps(cache.mode, sort_keys=True)] = cache
        self._cache_guard = [(t, t._version) for t in
                             (*self.bert.parameters(), *self.bert.buffers())]

    def text_cache_is_valid(self) -> bool:
        """Whether BERT is unchanged since the caches were attached.

        Returns:
            False (after detaching the caches, with a warning) when any BERT
            parameter or buffer was modified in place since.
        """
        if all(t._version == v for t, v in self._cache_guard):
            return True
        warnings.warn(
            'BertTextEncoder: BERT weights changed after the text '
            'cache was attached; the cache is detached and BERT runs '
            'live.')
        self.attach_text_cache(None)
        return False

    def _matching_cache(self, device: torch.device
                        ) -> Optional[TokenFeatureLookup]:
        """The cache of this forward's numeric mode; else None, logged once."""
        reasons = []
        for cache in self.text_caches.values():
            reason = cache.mismatch(device)
            if reason is None:
                return cache
            reasons.append(reason)
        note = '; '.join(reasons)
        if note not in self._cache_notes:
            self._cache_notes.add(note)
            print_log(
                'BertTextEncoder: frozen text cache off for this forward '
                f'(BERT runs live): {note}', logger='current',
                level=logging.WARNING)
        return None

    def _cached_bert_tokens(self, input_ids: torch.Tensor,
                            attention_mask: torch.Tensor,
                            cache: TokenFeatureLookup) -> torch.Tensor:
        """:meth:`frozen_bert_tokens` served from ``cache`` where possible."""
        T, L = input_ids.shape
        real = attention_mask.bool()
        lengths = real.sum(1)
        # a row's key is its real tokens: only right-padded rows have one
        rows_with_key = (real.long().cumprod(1).sum(1) == lengths).nonzero()
        rows_with_key = rows_with_key.flatten().tolist()
        ids_np = input_ids.cpu().numpy()
        n_np = lengths.tolist()
        found, feats = cache.gather(
            [ids_np[t, :n_np[t]] for t in rows_with_key])
        hit = torch.zeros(T, dtype=torch.bool)
        hit[[t for t, f in zip(rows_with_key, found) if f]] = True
        hit = hit.to(input_ids.device)
        hidden = torch.zeros(T, L, self.bert.config.hidden_size,
                             dtype=cache.dtype, device=input_ids.device)
        if hit.any():
            hidden[real & hit[:, None]] = torch.from_numpy(feats).to(hidden)
        num_hits = int(hit.sum())
        if num_hits < T:
            miss = ~hit
            hidden[miss] = self.frozen_bert_tokens(input_ids[miss],
                                                   attention_mask[miss])
        self.cache_stats['hits'] += num_hits
        self.cache_stats['misses'] += T - num_hits
        return hidden

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
        cache = None
        if (self.frozen and self.text_caches and not _is_exporting()
                and self.text_cache_is_valid()):
            cache = self._matching_cache(input_ids.device)
        if not self.frozen:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask).last_hidden_state
        elif cache is not None:
            hidden = self._cached_bert_tokens(input_ids, attention_mask, cache)
        else:
            hidden = self.frozen_bert_tokens(input_ids, attention_mask)
        padding_mask = attention_mask == 0
        if self.project_first:
            hidden = self.proj(hidden)
        if self.lte is not None:
            hidden = masked_transformer(self.lte, hidden, padding_mask,
                                        with_cp=self.with_cp)
        if not self.project_first:
            hidden = self.proj(hidden)
        return hidden[:, 0], hidden[:, 1:], padding_mask[:, 1:]

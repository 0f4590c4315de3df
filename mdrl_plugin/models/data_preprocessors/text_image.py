"""Data preprocessor: image normalisation and caption tokenisation."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.model import BaseDataPreprocessor

from mdrl_plugin.registry import MODELS

from ..weights import hf_source

__all__ = ['TextImageDataPreprocessor']


def load_tokenizer(path: str):
    """Load a Hugging Face tokenizer from a local folder or a hub id.

    Args:
        path: A local model folder or a Hugging Face id (a folder that exists
            wins; an id not cached is fetched unless offline).

    Returns:
        The tokenizer.

    Raises:
        FileNotFoundError: A folder without a tokenizer, or (as
            ``WeightsNotFoundError``) a missing folder or an id that is not
            cached and cannot be fetched.
    """
    from transformers import AutoTokenizer
    hf_source(path, 'tokenizer').resolve()  # or one clear error
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(
            f'Tokenizer {path!r} holds no usable tokenizer (expected '
            f'vocab.txt or tokenizer.json): {err}') from err


@MODELS.register_module()
class TextImageDataPreprocessor(BaseDataPreprocessor):
    """Stack and normalise images; tokenise captions into ids and a mask.

    Data samples carry ``text`` (training, one caption) or ``texts``
    (evaluation, all captions of the image, possibly none). The captions of a
    batch are tokenised in sample order into one ``[T, L]`` matrix.

    Args:
        tokenizer: Hugging Face tokenizer: a local folder or a hub id (usually
            the BERT's), see :func:`load_tokenizer`.
        max_length: Token length incl. [CLS] and [SEP]; longer captions are
            truncated. Defaults to 64.
        padding: ``'longest'`` pads to the longest caption of the batch
            (faster; the model masks padding so features do not depend on it)
            or ``'max_length'`` pads every caption to ``max_length``.
        mean: Per-channel mean (0-255 scale). Defaults to ImageNet's.
        std: Per-channel std (0-255 scale). Defaults to ImageNet's.
        bgr_to_rgb: Swap channels of BGR input (the default loader reads BGR).
    """

    def __init__(self,
                 tokenizer: str,
                 max_length: int = 64,
                 padding: str = 'longest',
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 bgr_to_rgb: bool = True) -> None:
        super().__init__()
        if padding not in ('longest', 'max_length'):
            raise ValueError("padding must be 'longest' or 'max_length', "
                             f'got {padding!r}')
        self.tokenizer_path = tokenizer
        self.tokenizer = load_tokenizer(tokenizer)
        self.max_length = max_length
        self.padding = padding
        self.bgr_to_rgb = bgr_to_rgb
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)

    def _fast_tokenizer(self):
        """A thread-safe copy of the fast tokenizer, or None for a slow one.

        A fast tokenizer called with ``truncation``/``padding`` reconfigures
        its shared Rust tokenizer, which breaks concurrent calls; the copy
        (:class:`mdrl_deploy.preprocess.TextTokenizer`) is configured once,
        and remade when ``max_length`` or ``padding`` change.
        """
        if not getattr(self.tokenizer, 'is_fast', False):
            return None  # slow tokenizers take their settings per call
        key = (self.max_length, self.padding)
        cached = self.__dict__.get('_fast_copy')
        if cached is None or cached[0] != key:
            from mdrl_deploy.preprocess import TextTokenizer
            cached = (key, TextTokenizer(
                self.tokenizer.backend_tokenizer, self.max_length,
                self.tokenizer.pad_token_id or 0,
                pad_to_max_length=self.padding == 'max_length'))
            self._fast_copy = cached
        return cached[1]

    def tokenize(self, texts: List[str]) -> Dict[str, torch.Tensor]:
        """Tokenise captions (thread-safe).

        Args:
            texts: Captions.

        Returns:
            dict: ``input_ids`` and ``attention_mask`` (``[T, L]`` long), on
            the preprocessor's device.
        """
        if len(texts) == 0:
            empty = torch.zeros(0, 2, dtype=torch.long, device=self.device)
            return dict(input_ids=empty, attention_mask=empty.clone())
        fast = self._fast_tokenizer()
        if fast is not None:
            enc = {k: torch.from_numpy(v)
                   for k, v in fast(list(texts)).items()}
        else:
            enc = self.tokenizer(
                list(texts), padding=self.padding, truncation=True,
                max_length=self.max_length, return_tensors='pt')
        return dict(input_ids=enc['input_ids'].to(self.device),
                    attention_mask=enc['attention_mask'].to(self.device))

    def token_ids(self, texts: List[str]) -> List[List[int]]:
        """Token ids of captions as :meth:`tokenize` gives them, unpadded.

        Args:
            texts: Captions.

        Returns:
            One list of ids per caption ([CLS] ... [SEP], truncated to
            ``max_length``).
        """
        if len(texts) == 0:
            return []
        fast = self._fast_tokenizer()
        if fast is not None:
            return fast.ids(list(texts))
        return self.tokenizer(list(texts), truncation=True,
                              max_length=self.max_length)['input_ids']

    def text_lengths(self, texts: List[str]) -> List[int]:
        """Untruncated token counts (with [CLS]/[SEP]) of captions."""
        fast = self._fast_tokenizer()
        if fast is not None:
            return fast.lengths(list(texts))
        return [len(ids) for ids in self.tokenizer(list(texts))['input_ids']]

    def preprocess_images(self, images) -> torch.Tensor:
        """Stack (if a list), convert to float and normalise
        ``[B, 3, H, W]``."""
        if isinstance(images, (list, tuple)):
            shapes = {tuple(img.shape) for img in images}
            if len(shapes) > 1:
                raise ValueError(
                    'Images of one batch differ in size '
                    f'{sorted(shapes)}: resize them in the pipeline')
            images = torch.stack(list(images))
        images = images.to(self.device).float()
        if self.bgr_to_rgb:
            images = images.flip(1)
        return (images - self.mean) / self.std

    def forward(self, data: dict, training: bool = False) -> dict:
        """Prepare a batch from ``pseudo_collate``.

        Args:
            data: ``dict(inputs=[uint8 CxHxW tensors], data_samples=[...])``.
            training: Whether the model is training (unused).

        Returns:
            dict: ``inputs=dict(images, input_ids, attention_mask)`` and the
            data samples.
        """
        samples = data.get('data_samples')
        inputs: Dict[str, Optional[torch.Tensor]] = dict(
            images=self.preprocess_images(data['inputs']))
        texts: List[str] = []
        for sample in samples or []:
            if 'text' in sample:
                texts.append(sample.text)
            elif 'texts' in sample:
                texts.extend(sample.texts)
        inputs.update(self.tokenize(texts))
        return dict(inputs=inputs, data_samples=samples)

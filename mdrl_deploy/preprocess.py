"""Image and text preprocessing of the export, without torch: the shipped
test pipeline, bit-identical with ``backend='cv2'``, within one grey level
with ``backend='pillow'`` (no OpenCV needed; docs/deploy.md)."""
import io
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


def resize_bilinear(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize ``uint8 [H, W, C]`` like ``cv2.resize(..., INTER_LINEAR)``
    within one grey level (docs/deploy.md, "Image preprocessing").

    Args:
        img: The image.
        width: Output width.
        height: Output height.

    Returns:
        ``uint8 [height, width, C]``.
    """
    from PIL import Image
    scale = (img.shape[1] / width, 0, 0, 0, img.shape[0] / height, 0)
    channels = [Image.fromarray(img[..., c].astype(np.float32)).transform(
        (width, height), Image.Transform.AFFINE, scale,
        Image.Resampling.BILINEAR) for c in range(img.shape[2])]
    out = np.stack([np.asarray(c) for c in channels], axis=2)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class ImagePreprocessor:
    """Read image files into the normalised ``float32 [B, 3, H, W]`` input.

    Args:
        height: Network input height.
        width: Network input width.
        mean: Per-channel mean (0-255 scale), in ``channel_order``.
        std: Per-channel std (0-255 scale), in ``channel_order``.
        channel_order: ``'rgb'`` or ``'bgr'``: the order the graph expects.
        backend: ``'cv2'``, ``'pillow'`` or None (cv2 when installed).
    """

    def __init__(self, height: int, width: int, mean: Sequence[float],
                 std: Sequence[float], channel_order: str = 'rgb',
                 backend: Optional[str] = None) -> None:
        if channel_order not in ('rgb', 'bgr'):
            raise ValueError("channel_order must be 'rgb' or 'bgr', got "
                             f'{channel_order!r}')
        if backend is None:  # cv2 when it imports (it may lack libGL)
            try:
                import cv2  # noqa: F401
                backend = 'cv2'
            except ImportError:
                backend = 'pillow'
        if backend not in ('cv2', 'pillow'):
            raise ValueError(f"backend must be 'cv2' or 'pillow', got "
                             f'{backend!r}')
        self.height, self.width = int(height), int(width)
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)
        self.channel_order = channel_order
        self.backend = backend

    def read(self, path: str) -> np.ndarray:
        """Decode and resize one file to ``uint8 [H, W, 3]`` in RGB order
        (a ValueError naming the file if it is empty or undecodable)."""
        with open(path, 'rb') as f:
            content = f.read()
        if not content:
            raise ValueError(f'image file {path!r} is empty (0 bytes)')
        if self.backend == 'cv2':
            import cv2
            img = cv2.imdecode(np.frombuffer(content, np.uint8),
                               cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'image file {path!r} could not be decoded '
                                 'by OpenCV')
            img = cv2.resize(img, (self.width, self.height),
                             interpolation=cv2.INTER_LINEAR)
            return img[..., ::-1]
        from PIL import Image, ImageOps
        try:
            with Image.open(io.BytesIO(content)) as im:
                img = np.asarray(ImageOps.exif_transpose(im).convert('RGB'))
        except Exception as err:  # Pillow raises many types
            raise ValueError(f'image file {path!r} could not be decoded by '
                             f'Pillow: {type(err).__name__}: {err}') from err
        return resize_bilinear(img, self.width, self.height)

    def __call__(self, paths: Sequence[str]) -> np.ndarray:
        """Normalised ``float32 [B, 3, H, W]`` of image files."""
        batch = np.zeros((len(paths), 3, self.height, self.width), np.float32)
        for i, path in enumerate(paths):
            img = self.read(path).transpose(2, 0, 1)
            if self.channel_order == 'bgr':
                img = img[::-1]
            batch[i] = (img.astype(np.float32) - self.mean) / self.std
        return batch


class TextTokenizer:
    """The model's fast tokenizer (``tokenizers``), safe from many threads:
    two copies configured once (docs/deploy.md, "Thread safety").

    Args:
        source: A folder with ``tokenizer.json``, or a Tokenizer to copy.
        max_length: Tokens kept ([CLS] and [SEP] included).
        pad_token_id: Id written at padded places (masked out).
        pad_to_max_length: Pad every batch to ``max_length``, not its longest.
    """

    def __init__(self, source: Any, max_length: int, pad_token_id: int = 0,
                 pad_to_max_length: bool = False) -> None:
        from tokenizers import Tokenizer
        if isinstance(source, (str, os.PathLike)):
            file = os.path.join(source, 'tokenizer.json')
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f'{str(source)!r} has no tokenizer.json (fast tokenizer '
                    'file); export the checkpoint again with tools/export.py.')
            source = Tokenizer.from_file(file)
        spec = source.to_str()
        self.max_length = int(max_length)
        self._full = Tokenizer.from_str(spec)
        self._full.no_padding()
        self._full.no_truncation()
        self._cut = Tokenizer.from_str(spec)
        self._cut.enable_truncation(self.max_length)
        self._cut.enable_padding(
            pad_id=int(pad_token_id),
            length=self.max_length if pad_to_max_length else None)

    def lengths(self, texts: Sequence[str]) -> List[int]:
        """Untruncated token counts (special tokens included)."""
        return [len(e.ids) for e in self._full.encode_batch(list(texts))]

    def ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Token ids of each text, truncated to ``max_length``, unpadded."""
        return [e.ids[:sum(e.attention_mask)]
                for e in self._cut.encode_batch(list(texts))]

    def __call__(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask``, ``int64 [T, L]``."""
        enc = self._cut.encode_batch(list(texts))
        shape = (len(enc), len(enc[0].ids) if enc else 0)
        return dict(
            input_ids=np.array([e.ids for e in enc], np.int64).reshape(shape),
            attention_mask=np.array([e.attention_mask for e in enc],
                                    np.int64).reshape(shape))

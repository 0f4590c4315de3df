"""Random crop with padding and random erasing, on the image before packing.

Both draw from NumPy's global generator, as mmcv's ``RandomFlip`` does, so
``randomness=dict(seed=...)`` makes a run reproducible; at ``prob=0`` they
draw nothing (the pipeline's other draws, flips included, are unchanged).
"""
import math
import numbers
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness

from mdrl_plugin.registry import TRANSFORMS

__all__ = ['RandomCropPad', 'RandomErasing']

Number = Union[int, float]


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_prob(name: str, prob) -> float:
    if not _is_number(prob) or not 0 <= prob <= 1:
        raise ValueError(
            f'{name}: prob must be a number in [0, 1], got {prob!r}.')
    return float(prob)


def _check_fill(name: str, arg: str, value, allowed: str
                ) -> Union[float, Tuple[float, ...]]:
    """A number in [0, 255], or a non-empty sequence of such numbers."""
    scalar = _is_number(value)
    sequence = isinstance(value, Sequence) and not isinstance(
        value, (str, bytes))
    values = (value, ) if scalar else tuple(value) if sequence else ()
    if not values or not all(_is_number(v) and 0 <= v <= 255
                             for v in values):
        raise ValueError(
            f'{name}: {arg} must be {allowed}a number in [0, 255] or a '
            f'sequence of such numbers (one per channel), got {value!r}.')
    return float(value) if scalar else tuple(float(v) for v in values)


def _check_channels(name: str, arg: str, fill, img: np.ndarray,
                    results: dict) -> None:
    channels = img.shape[2] if img.ndim == 3 else None
    if isinstance(fill, tuple) and len(fill) != (channels or 1):
        raise ValueError(
            f'{name}: {arg} has {len(fill)} values but image '
            f'{results.get("img_path")!r} has '
            f'{channels or "no channel axis, so 1"} channel(s) (shape '
            f'{img.shape}).')


def check_img(name: str, results: dict) -> np.ndarray:
    """``results['img']``, an H x W (x C) array, or an error naming it."""
    if 'img' not in results:
        raise KeyError(
            f'{name} needs the key \'img\' (load the image earlier in the '
            f'pipeline); got keys {sorted(results)}.')
    img = results['img']
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise TypeError(
            f'{name}: \'img\' must be an H x W or H x W x C numpy array, got '
            f'{type(img).__name__} of shape {getattr(img, "shape", None)} '
            f'(image {results.get("img_path")!r}).')
    return img


def _as_pixel(fill: Union[float, Tuple[float, ...]],
              dtype: np.dtype) -> np.ndarray:
    """The fill value(s) in the image's dtype (rounded for integer images)."""
    value = np.asarray(fill, dtype=np.float64)
    if np.issubdtype(dtype, np.integer):
        value = np.round(value)
    return value.astype(dtype)


@TRANSFORMS.register_module()
class RandomCropPad(BaseTransform):
    """Pad the image, then crop the original size back at a uniformly drawn
    offset: a random shift by up to ``padding`` pixels each way, the border
    filled by ``pad_mode``; shape and dtype are kept.

    Required keys: ``img`` (H x W x C or H x W). Modified keys: ``img``.

    Args:
        padding: Pixels added on each side: an int or ``(pad_h, pad_w)``.
        prob: Probability of applying it; at 0 nothing is drawn, at 1 only
            the offset.
        pad_mode: ``'constant'``, ``'edge'``, ``'reflect'`` or
            ``'symmetric'`` (as ``numpy.pad``).
        pad_val: Fill of ``'constant'`` mode in the image's channel order
            (BGR after ``LoadPersonImage``): a number or one per channel, in
            [0, 255] (rounded on integer images).
    """

    PAD_MODES = ('constant', 'edge', 'reflect', 'symmetric')

    def __init__(self,
                 padding: Union[int, Sequence[int]] = 10,
                 prob: float = 1.0,
                 pad_mode: str = 'constant',
                 pad_val: Union[Number, Sequence[Number]] = 0) -> None:
        name = type(self).__name__
        pads = (padding, padding) if not isinstance(padding, Sequence) \
            else tuple(padding)
        if (isinstance(padding, (str, bytes)) or len(pads) != 2
                or not all(isinstance(p, numbers.Integral)
                           and not isinstance(p, bool) and p >= 0
                           for p in pads)):
            raise ValueError(
                f'{name}: padding must be an int >= 0 or a pair (pad_h, '
                f'pad_w) of ints >= 0, got {padding!r}.')
        self.padding = (int(pads[0]), int(pads[1]))
        self.prob = _check_prob(name, prob)
        if pad_mode not in self.PAD_MODES:
            raise ValueError(
                f'{name}: pad_mode must be one of {self.PAD_MODES}, got '
                f'{pad_mode!r}.')
        self.pad_mode = pad_mode
        self.pad_val = _check_fill(name, 'pad_val', pad_val, '')

    @cache_randomness
    def _random_offset(self) -> Optional[Tuple[int, int]]:
        """Top-left corner of the crop in the padded image, or None."""
        if self.prob == 0 or (self.prob < 1 and np.random.rand() >= self.prob):
            return None
        pad_h, pad_w = self.padding
        return (int(np.random.randint(0, 2 * pad_h + 1)),
                int(np.random.randint(0, 2 * pad_w + 1)))

    def transform(self, results: dict) -> dict:
        """Shift ``results['img']`` at random (``results`` is returned)."""
        name = type(self).__name__
        img = check_img(name, results)
        _check_channels(name, 'pad_val', self.pad_val, img, results)
        offset = self._random_offset()
        if offset is None or self.padding == (0, 0):
            return results
        pad_h, pad_w = self.padding
        h, w = img.shape[:2]
        # cv2 reads a scalar border value as (value, 0, 0, 0): give one value
        # per channel
        value = _as_pixel(self.pad_val, img.dtype).reshape(-1)
        if img.ndim == 2:
            pad_val = value.item()
        else:
            pad_val = tuple(np.broadcast_to(value, img.shape[2:]).tolist())
        padded = mmcv.impad(
            img, padding=(pad_w, pad_h, pad_w, pad_h), pad_val=pad_val,
            padding_mode=self.pad_mode)
        top, left = offset
        results['img'] = np.ascontiguousarray(
            padded[top:top + h, left:left + w])
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(padding={self.padding}, '
                f'prob={self.prob}, pad_mode={self.pad_mode!r}, '
                f'pad_val={self.pad_val})')


@TRANSFORMS.register_module()
class RandomErasing(BaseTransform):
    """Random erasing (Zhong et al., AAAI 2020) on the image before
    normalisation.

    With probability ``prob`` a rectangle is overwritten: area fraction
    uniform in ``area_ratio``, height / width log-uniform in
    ``aspect_ratio``; a draw whose rounded rectangle does not fit or leaves
    the ranges is redrawn, up to ``max_attempts`` times (then nothing is
    erased). The image is still in pixel values, so ``'random'`` gives each
    pixel and channel a uniform integer in [0, 255] (the paper's noise), and
    the preprocessor's mean in the image's channel order (BGR loading:
    ``fill=(103.53, 116.28, 123.675)``) erases to about 0 after
    normalisation.

    Required keys: ``img`` (H x W x C or H x W). Modified keys: ``img``.

    Args:
        prob: Probability of erasing; at 0 nothing is drawn.
        area_ratio: ``(min, max)`` erased fraction, ``0 < min <= max <= 1``.
        aspect_ratio: ``(min, max)`` height / width, ``0 < min <= max``.
        fill: ``'random'``, a number in [0, 255] or one per channel.
        max_attempts: Draws of a rectangle before giving up, >= 1.
    """

    def __init__(self,
                 prob: float = 0.5,
                 area_ratio: Tuple[float, float] = (0.02, 0.4),
                 aspect_ratio: Tuple[float, float] = (0.3, 3.33),
                 fill: Union[str, Number, Sequence[Number]] = 'random',
                 max_attempts: int = 10) -> None:
        name = type(self).__name__
        self.prob = _check_prob(name, prob)
        self.area_ratio = self._check_range(
            'area_ratio', area_ratio, '0 < min <= max <= 1', upper=1.0)
        self.aspect_ratio = self._check_range(
            'aspect_ratio', aspect_ratio, '0 < min <= max', upper=math.inf)
        random_fill = isinstance(fill, str) and fill == 'random'
        self.fill = fill if random_fill else _check_fill(
            name, 'fill', fill, "'random', ")
        if (not isinstance(max_attempts, numbers.Integral)
                or isinstance(max_attempts, bool) or max_attempts < 1):
            raise ValueError(
                f'{name}: max_attempts must be an int >= 1, got '
                f'{max_attempts!r}.')
        self.max_attempts = int(max_attempts)

    def _check_range(self, arg: str, value, rule: str,
                     upper: float) -> Tuple[float, float]:
        ok = (isinstance(value, Sequence) and not isinstance(value, str)
              and len(value) == 2 and all(_is_number(v) for v in value))
        if ok:
            lo, hi = float(value[0]), float(value[1])
            ok = 0 < lo <= hi <= upper
        if not ok:
            raise ValueError(
                f'{type(self).__name__}: {arg} must be a pair (min, max) with '
                f'{rule}, got {value!r}.')
        return lo, hi

    @cache_randomness
    def _random_box(self, h: int, w: int, channels: Optional[int]
                    ) -> Optional[Tuple[int, int, int, int,
                                        Optional[np.ndarray]]]:
        """``(top, left, height, width, noise)`` of the rectangle or None;
        ``noise`` is the random uint8 fill (None for a constant fill)."""
        if self.prob == 0 or (self.prob < 1 and np.random.rand() >= self.prob):
            return None
        area = h * w
        lo_area, hi_area = self.area_ratio
        lo_aspect, hi_aspect = self.aspect_ratio
        for _ in range(self.max_attempts):
            target = np.random.uniform(lo_area, hi_area) * area
            aspect = math.exp(
                np.random.uniform(math.log(lo_aspect), math.log(hi_aspect)))
            eh = int(round(math.sqrt(target * aspect)))
            ew = int(round(math.sqrt(target / aspect)))
            if not (0 < eh <= h and 0 < ew <= w):
                continue
            if not (lo_area * area <= eh * ew <= hi_area * area
                    and lo_aspect <= eh / ew <= hi_aspect):
                continue
            top = int(np.random.randint(0, h - eh + 1))
            left = int(np.random.randint(0, w - ew + 1))
            noise = None
            if self.fill == 'random':
                shape = (eh, ew) if channels is None else (eh, ew, channels)
                noise = np.random.randint(0, 256, size=shape, dtype=np.uint8)
            return top, left, eh, ew, noise
        return None

    def transform(self, results: dict) -> dict:
        """Erase a random rectangle of ``results['img']`` (into a new array;
        ``results`` is returned)."""
        name = type(self).__name__
        img = check_img(name, results)
        if self.fill != 'random':
            _check_channels(name, 'fill', self.fill, img, results)
        channels = img.shape[2] if img.ndim == 3 else None
        box = self._random_box(img.shape[0], img.shape[1], channels)
        if box is None:
            return results
        top, left, eh, ew, noise = box
        out = img.copy()
        if noise is not None:
            out[top:top + eh, left:left + ew] = noise.astype(img.dtype)
        else:
            fill = _as_pixel(self.fill, img.dtype)
            if img.ndim == 2:
                fill = fill.reshape(-1)[0]
            out[top:top + eh, left:left + ew] = fill
        results['img'] = out
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, '
                f'area_ratio={self.area_ratio}, '
                f'aspect_ratio={self.aspect_ratio}, fill={self.fill!r}, '
                f'max_attempts={self.max_attempts})')

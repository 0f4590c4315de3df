"""Packing an image and its caption(s) for the model."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import TRANSFORMS

from .augment import check_img

__all__ = ['PackTextImageInputs']


@TRANSFORMS.register_module()
class PackTextImageInputs(BaseTransform):
    """Pack an image and its caption(s) into ``inputs`` and a data sample.

    Output: ``dict(inputs=<C x H x W tensor of the image's dtype>,
    data_samples=<BaseDataElement>)``; the sample's metainfo holds the
    ``meta_keys`` present (``text``, ``texts`` as a list of str, and
    ``gt_label``, ``pid``, ``image_id`` as Python ints, ...).

    Required keys: ``img`` (H x W x C or H x W array). Optional keys: those in
    ``meta_keys``.

    Args:
        meta_keys: Keys copied into the data sample's metainfo.
    """

    DEFAULT_META_KEYS = ('text', 'texts', 'gt_label', 'pid', 'image_id',
                         'img_path', 'ori_shape', 'img_shape', 'flip')
    _INT_KEYS = ('gt_label', 'pid', 'image_id')

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        if isinstance(meta_keys, str):
            meta_keys = (meta_keys, )
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``dict(inputs, data_samples)``."""
        img = check_img('PackTextImageInputs', results)
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

        meta = {}
        for key in self.meta_keys:
            if key not in results:
                continue
            value = results[key]
            if key in self._INT_KEYS:
                value = int(value)
            elif key == 'texts':
                if isinstance(value, str) or not all(
                        isinstance(t, str) for t in value):
                    raise TypeError(
                        'PackTextImageInputs: \'texts\' must be a list of '
                        f'str, got {value!r:.80} (image '
                        f'{results.get("img_path")!r}).')
                value = list(value)
            elif key == 'text' and not isinstance(value, str):
                raise TypeError(
                    'PackTextImageInputs: \'text\' must be a str, got '
                    f'{type(value).__name__} (image '
                    f'{results.get("img_path")!r}).')
            meta[key] = value
        return dict(inputs=inputs, data_samples=BaseDataElement(metainfo=meta))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'

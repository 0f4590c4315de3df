"""Packing an image and its caption(s) for the model."""
from typing import Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.structures import BaseDataElement

from mdrl_plugin.registry import TRANSFORMS

__all__ = ['PackTextImageInputs']


@TRANSFORMS.register_module()
class PackTextImageInputs(BaseTransform):
    """Pack an image and its caption(s) into ``inputs`` and a data sample.

    Output::

        dict(inputs=<torch.Tensor C x H x W, dtype of the image (uint8)>,
             data_samples=<BaseDataElement>)

    The data sample's metainfo holds each key of ``meta_keys`` that the
    results have, so the data preprocessor reads ``sample.text`` (training),
    ``sample.texts`` (evaluation, list of str), ``sample.gt_label``,
    ``sample.pid``, ``sample.image_id`` and so on. ``gt_label``, ``pid`` and
    ``image_id`` are stored as Python ints.

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
        """Pack ``results``.

        Args:
            results: Output of the previous transforms.

        Returns:
            ``dict(inputs=tensor, data_samples=BaseDataElement)``.
        """
        if 'img' not in results:
            raise KeyError(
                'PackTextImageInputs needs the key \'img\' (load the image '
                f'earlier in the pipeline); got keys {sorted(results)}.')
        img = results['img']
        if not isinstance(img, np.ndarray):
            raise TypeError(
                'PackTextImageInputs: \'img\' must be a numpy array, got '
                f'{type(img).__name__} (image {results.get("img_path")!r}).')
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3:
            raise ValueError(
                'PackTextImageInputs: \'img\' must be H x W or H x W x C, got '
                f'shape {img.shape} (image {results.get("img_path")!r}).')
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

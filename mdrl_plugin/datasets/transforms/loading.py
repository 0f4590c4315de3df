"""Image loading that names the file when it cannot be read."""
from typing import Optional

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile

from mdrl_plugin.registry import TRANSFORMS

from ..errors import UnreadableImageError

__all__ = ['LoadPersonImage']


@TRANSFORMS.register_module()
class LoadPersonImage(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with errors that name the file.

    mmcv fails on an undecodable file with an ``AssertionError`` (gone under
    ``python -O``) and on an empty one with a bare OpenCV error. This loader
    raises :class:`FileNotFoundError` for a missing file and
    :class:`~mdrl_plugin.datasets.errors.UnreadableImageError` (a
    ``ValueError``) for an empty or corrupt one, both naming the path. The
    default ``'bgr'`` order is OpenMMLab's (preprocess with
    ``bgr_to_rgb=True``).

    Required keys: ``img_path``. Added keys: ``img``, ``img_shape``,
    ``ori_shape``.

    Args:
        channel_order: ``'bgr'`` or ``'rgb'``.
        to_float32: Return float32 instead of uint8.
        color_type: Flag of :func:`mmcv.imfrombytes`.
        imdecode_backend: Decoder of :func:`mmcv.imfrombytes`.
        ignore_empty: Return None instead of raising.
        backend_args: Arguments of the mmengine file backend.
    """

    def __init__(self,
                 channel_order: str = 'bgr',
                 to_float32: bool = False,
                 color_type: str = 'color',
                 imdecode_backend: str = 'cv2',
                 ignore_empty: bool = False,
                 backend_args: Optional[dict] = None) -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(
                f"LoadPersonImage: channel_order must be 'bgr' or 'rgb', got "
                f'{channel_order!r}.')
        super().__init__(
            to_float32=to_float32, color_type=color_type,
            imdecode_backend=imdecode_backend, ignore_empty=ignore_empty,
            backend_args=backend_args)
        self.channel_order = channel_order

    def _read(self, filename: str) -> np.ndarray:
        try:
            content = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(
                f'LoadPersonImage: image file {filename!r} does not '
                f'exist.') from None
        except OSError as e:
            raise UnreadableImageError(
                f'LoadPersonImage: cannot read image file {filename!r}: '
                f'{e}') from e
        if not content:
            raise UnreadableImageError(
                f'LoadPersonImage: image file {filename!r} is empty (0 '
                f'bytes).')
        try:
            img = mmcv.imfrombytes(
                content,
                flag=self.color_type,
                channel_order=self.channel_order,
                backend=self.imdecode_backend)
        except Exception as e:  # decoders raise many types
            raise UnreadableImageError(
                f'LoadPersonImage: image file {filename!r} ({len(content)} '
                f'bytes) could not be decoded by {self.imdecode_backend}: '
                f'{type(e).__name__}: {str(e).strip()}') from e
        if img is None or img.size == 0:
            raise UnreadableImageError(
                f'LoadPersonImage: image file {filename!r} ({len(content)} '
                f'bytes) is corrupt or not an image: {self.imdecode_backend} '
                f'could not decode it.')
        return img

    def transform(self, results: dict) -> Optional[dict]:
        """Load ``results['img_path']``; None when it fails and
        ``ignore_empty`` is set."""
        if 'img_path' not in results:
            raise KeyError(
                f'LoadPersonImage needs the key \'img_path\'; got keys '
                f'{sorted(results)}.')
        filename = results['img_path']
        try:
            img = self._read(filename)
        except (FileNotFoundError, UnreadableImageError):
            if self.ignore_empty:
                return None
            raise
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return (super().__repr__()[:-1] +
                f', channel_order={self.channel_order!r})')

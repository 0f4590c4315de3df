import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile

from mdrl_plugin.datasets import UnreadableImageError
from mdrl_plugin.registry import TRANSFORMS
from test_datasets._pedes_data import write_image


@pytest.fixture
def loader():
    return TRANSFORMS.build(dict(type='LoadPersonImage'))


def test_loads_bgr_by_default_and_rgb_on_request(tmp_path, loader):
    path = str(tmp_path / 'a.png')
    img = write_image(path, width=5, height=9)
    out = loader(dict(img_path=path))
    assert out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'], img)  # cv2 wrote BGR
    assert out['img_shape'] == (9, 5) and out['ori_shape'] == (9, 5)
    rgb = TRANSFORMS.build(dict(type='LoadPersonImage',
                                channel_order='rgb'))(dict(img_path=path))
    np.testing.assert_array_equal(rgb['img'], img[..., ::-1])
    as_float = TRANSFORMS.build(dict(type='LoadPersonImage',
                                     to_float32=True))(dict(img_path=path))
    assert as_float['img'].dtype == np.float32


def test_grayscale_file_gives_three_channels(tmp_path, loader):
    path = str(tmp_path / 'g.png')
    cv2.imwrite(path, np.full((4, 3), 77, np.uint8))
    out = loader(dict(img_path=path))
    assert out['img'].shape == (4, 3, 3) and (out['img'] == 77).all()


def test_corrupt_file_error_names_it(tmp_path, loader):
    path = tmp_path / 'bad.jpg'
    path.write_bytes(b'this is not a jpeg')
    with pytest.raises(UnreadableImageError) as exc:
        loader(dict(img_path=str(path)))
    assert isinstance(exc.value, ValueError)
    assert str(exc.value) == (
        f"LoadPersonImage: image file '{path}' (18 bytes) is corrupt or not "
        f'an image: cv2 could not decode it.')


def test_empty_file_error_names_it(tmp_path, loader):
    path = tmp_path / 'empty.png'
    path.write_bytes(b'')
    with pytest.raises(UnreadableImageError) as exc:
        loader(dict(img_path=str(path)))
    assert str(exc.value) == (
        f"LoadPersonImage: image file '{path}' is empty (0 bytes).")
    # what mmcv's loader does with the same file: a bare OpenCV error that
    # does not name the file (the reason this transform exists)
    with pytest.raises(cv2.error) as mmcv_exc:
        LoadImageFromFile()(dict(img_path=str(path)))
    assert str(path) not in str(mmcv_exc.value)


def test_truncated_jpeg_and_pillow_backend(tmp_path):
    good = str(tmp_path / 'good.jpg')
    write_image(good, width=16, height=32)
    with open(good, 'rb') as f:
        data = f.read()
    bad = tmp_path / 'trunc.jpg'
    bad.write_bytes(data[:len(data) // 3])
    for backend in ('cv2', 'pillow'):
        t = TRANSFORMS.build(dict(type='LoadPersonImage',
                                  imdecode_backend=backend))
        with pytest.raises(UnreadableImageError, match=str(bad)):
            t(dict(img_path=str(bad)))
        assert t(dict(img_path=good))['img'].shape == (32, 16, 3)


def test_missing_file_and_ignore_empty(tmp_path, loader):
    path = str(tmp_path / 'nope.png')
    with pytest.raises(FileNotFoundError) as exc:
        loader(dict(img_path=path))
    assert str(exc.value) == (
        f"LoadPersonImage: image file '{path}' does not exist.")
    lenient = TRANSFORMS.build(dict(type='LoadPersonImage',
                                    ignore_empty=True))
    assert lenient(dict(img_path=path)) is None
    with pytest.raises(KeyError, match='needs the key \'img_path\''):
        loader(dict(img='x'))
    with pytest.raises(ValueError, match="channel_order must be 'bgr' or"):
        TRANSFORMS.build(dict(type='LoadPersonImage', channel_order='BGR'))
    assert "channel_order='bgr'" in repr(loader)

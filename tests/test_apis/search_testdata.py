"""Test data of the search API: a tiny model config + checkpoint and a gallery."""
import os
import os.path as osp
from typing import Dict, List

import cv2
import numpy as np

#: Test pipeline of the tiny model: 16x32 (w, h) images.
TEST_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(16, 32), keep_ratio=False),
    dict(type='PackTextImageInputs'),
]


def write_model(folder: str, bert_dir: str, seed: int = 0,
                name: str = 'tiny') -> Dict[str, str]:
    """Write ``<name>_cfg.py`` (model + test pipeline) and ``<name>.pth``.

    Args:
        folder: Destination folder (created).
        bert_dir: Tiny BERT folder from ``write_tiny_bert``.
        seed: Seed of the model's random weights.
        name: File name stem.

    Returns:
        ``dict(config=..., checkpoint=...)`` paths.
    """
    import torch
    from mmengine import Config

    import mdrl_plugin  # noqa: F401
    from mdrl_plugin.registry import MODELS

    from mdrl_test_utils import tiny_mdrl_cfg

    os.makedirs(folder, exist_ok=True)
    model_cfg = tiny_mdrl_cfg(bert_dir)
    cfg = Config(dict(
        default_scope='mdrl_plugin', model=model_cfg,
        test_dataloader=dict(dataset=dict(pipeline=TEST_PIPELINE))))
    cfg_path = osp.join(folder, f'{name}_cfg.py')
    cfg.dump(cfg_path)
    torch.manual_seed(seed)
    model = MODELS.build(model_cfg)
    ckpt = osp.join(folder, f'{name}.pth')
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, ckpt)
    return dict(config=cfg_path, checkpoint=ckpt)


def write_gallery(folder: str, num: int = 10, seed: int = 0) -> List[str]:
    """Write ``num`` random images (sizes and formats vary) in sub-folders.

    Image ``i`` is ``<folder>/cam<i % 2>/p<i // 2>_<i>.<jpg|png>``, i.e. two
    images per identity ``i // 2``.

    Returns:
        The absolute paths in sorted order.
    """
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(num):
        sub = osp.join(folder, f'cam{i % 2}')
        os.makedirs(sub, exist_ok=True)
        h, w = int(rng.integers(40, 90)), int(rng.integers(20, 45))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[:h // 2] = rng.integers(0, 256, 3)  # a coloured "upper body"
        ext = 'png' if i % 3 == 0 else 'jpg'
        path = osp.abspath(osp.join(sub, f'p{i // 2}_{i}.{ext}'))
        assert cv2.imwrite(path, img)
        paths.append(path)
    return sorted(paths)


def pid_of(path: str) -> int:
    """Identity of a test gallery image ``p<pid>_<i>.<ext>``."""
    return int(osp.basename(path)[1:].split('_')[0])

"""Helpers writing tiny PEDES datasets in the public release layouts."""
import json
import os
import os.path as osp
from typing import List, Optional

import cv2
import numpy as np


def write_image(path: str, width: int = 6, height: int = 12,
                seed: int = 0) -> np.ndarray:
    """Write a small random colour image (PNG or JPEG by extension).

    Returns:
        The BGR array written.
    """
    os.makedirs(osp.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img), path
    return img


def write_dataset(root: str, json_name: str, records: List[dict],
                  path_key: str = 'file_path',
                  skip_images: Optional[List[str]] = None) -> str:
    """Write ``records`` as the release's JSON and their images under imgs/.

    Args:
        root: Dataset folder (created).
        json_name: Annotation file name.
        records: Records as the release ships them.
        path_key: Field holding the image path.
        skip_images: Paths not to write.

    Returns:
        ``root``.
    """
    os.makedirs(root, exist_ok=True)
    skip = set(skip_images or [])
    for i, rec in enumerate(records):
        rel = rec.get(path_key)
        if isinstance(rel, str) and rel not in skip:
            write_image(osp.join(root, 'imgs', rel), seed=i)
    with open(osp.join(root, json_name), 'w') as f:
        json.dump(records, f, indent=1)
    return root


def cuhk_records() -> List[dict]:
    """CUHK-PEDES-like records: train ids 5, 3, 9; val 20; test 30, 31."""
    def rec(split, pid, path, caps):
        return dict(split=split, captions=caps, file_path=path, id=pid,
                    processed_tokens=[c.lower().split() for c in caps])
    return [
        rec('train', 5, 'CUHK01/0001.png',
            ['A man in a red shirt.', 'He wears blue pants.']),
        rec('train', 3, 'CUHK01/0002.png',
            ['A woman with a bag.', 'She has long hair.']),
        rec('train', 5, 'CUHK03/0003.png', ['  The man walking.  \n']),
        rec('train', 9, 'cam_a/0004.png',
            ['A person in black.', 'Black coat and white shoes.']),
        rec('val', 20, 'val/0005.png', ['A man.', 'A green jacket.']),
        rec('test', 30, 'test/0006.png', ['A red dress.', 'A woman.']),
        rec('test', 30, 'test/0007.png', ['A woman in red.']),
        rec('test', 31, 'test/0008.png', ['A man in a hat.', 'A backpack.']),
    ]


def icfg_records() -> List[dict]:
    """ICFG-PEDES-like records: one caption each, train/test only."""
    out = []
    for i, (split, pid) in enumerate([('train', 1), ('train', 1),
                                      ('train', 2), ('test', 3),
                                      ('test', 4), ('test', 4)]):
        out.append(dict(
            split=split, id=pid, captions=[f'A person number {i}.'],
            file_path=f'{split}/{pid:04d}/{pid:04d}_{i:03d}.jpg',
            processed_tokens=[['a', 'person']]))
    return out


def rstp_records() -> List[dict]:
    """RSTPReid-like records (``img_path``, two captions each)."""
    out = []
    for i, (split, pid) in enumerate([('train', 10), ('train', 11),
                                      ('train', 10), ('val', 12),
                                      ('test', 13), ('test', 14)]):
        out.append(dict(
            id=pid, img_path=f'{pid:04d}_c{i}_{i:04d}.jpg',
            captions=[f'caption one of {i}', f'caption two of {i}'],
            split=split))
    return out

"""Writing a synthetic dataset in the CUHK-PEDES release layout."""
import json
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from .attributes import SPLITS, sample_identities
from .captions import make_captions, tokenize
from .rendering import encode_jpeg, render_image


def default_splits(num_ids: int) -> List[int]:
    """``[train, val, test]`` identity counts: 2/3, 1/6, 1/6 of ``num_ids``
    (``[200, 50, 50]`` for 300)."""
    val = test = int(round(num_ids / 6))
    return [num_ids - val - test, val, test]


def _check_args(num_ids: int, images_per_id: int, splits: List[int],
                out: str, overwrite: bool) -> None:
    """Raise ValueError naming the command-line argument that is wrong
    (:func:`sample_identities` checks ``num_ids`` against the attributes)."""
    if num_ids < 1:
        raise ValueError(f'--num-ids must be at least 1, got {num_ids}')
    if images_per_id < 1:
        raise ValueError(
            f'--images-per-id must be at least 1, got {images_per_id}')
    text = ','.join(map(str, splits))
    if len(splits) != 3 or min(splits) < 0:
        raise ValueError('--splits must be three non-negative integers '
                         f'TRAIN,VAL,TEST, got {splits}')
    if sum(splits) != num_ids:
        raise ValueError(f'--splits {text} sum to {sum(splits)}, expected '
                         f'--num-ids {num_ids}')
    if splits[0] < 1 or splits[2] < 1:
        raise ValueError('--splits needs at least one train and one test '
                         f'identity, got {text}')
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f'OUT {out} exists and is not a directory')
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(f'OUT {out} exists and is not empty; pass '
                         '--overwrite to replace its imgs/ and reid_raw.json')


def generate(out: str,
             num_ids: int = 300,
             images_per_id: int = 4,
             seed: int = 0,
             splits: Optional[Sequence[int]] = None,
             overwrite: bool = False) -> dict:
    """Write the synthetic dataset to ``out``.

    ``out/imgs/<split>_query/p<id>_s<n>.jpg`` and ``out/reid_raw.json``, a
    JSON list of records as the CUHK-PEDES release ships them (``split``,
    ``captions``, ``file_path`` relative to ``imgs/``, ``processed_tokens``,
    1-based ``id``), and, for searching a split's images as a gallery,
    ``out/labels_<split>_query.json``, the search labels ``{file name in
    imgs/<split>_query: id}`` (docs/search.md). Identity ``pid``'s image
    ``k`` is drawn from the random generator seeded ``[seed, pid, k]``:
    equal arguments give byte-identical files.

    Args:
        out: Output folder (the CUHK-PEDES root).
        num_ids: Number of identities.
        images_per_id: Images per identity (two captions each).
        seed: Random seed.
        splits: Train, val and test identity counts; default
            :func:`default_splits`.
        overwrite: Replace ``imgs/`` and ``reid_raw.json`` of a non-empty
            ``out`` (other files there are kept).

    Returns:
        A summary: ``{'out', 'json', 'identities', 'seconds',
        'splits': {split: {'ids', 'images', 'captions'}}}``.

    Raises:
        ValueError: On bad arguments, with a message naming the argument.
    """
    t0 = time.perf_counter()
    splits = list(splits) if splits is not None else default_splits(num_ids)
    _check_args(num_ids, images_per_id, splits, out, overwrite)
    identities = sample_identities(num_ids, splits, seed)
    img_root = os.path.join(out, 'imgs')
    json_path = os.path.join(out, 'reid_raw.json')
    if os.path.isdir(img_root):
        shutil.rmtree(img_root)
    if os.path.exists(json_path):
        os.remove(json_path)
    for split in SPLITS:
        os.makedirs(os.path.join(img_root, f'{split}_query'), exist_ok=True)

    records = []
    summary = {s: dict(ids=0, images=0, captions=0) for s in SPLITS}
    for ident in identities:
        summary[ident.split]['ids'] += 1
        for k in range(images_per_id):
            rng = np.random.default_rng([seed, ident.pid, k])
            img = render_image(ident, rng)
            captions = make_captions(ident, rng)
            rel = (f'{ident.split}_query/p{ident.pid:05d}_'
                   f's{len(records) + 1:05d}.jpg')
            with open(os.path.join(img_root, rel), 'wb') as f:
                f.write(encode_jpeg(img))
            records.append({
                'split': ident.split,
                'captions': captions,
                'file_path': rel,
                'processed_tokens': [tokenize(c) for c in captions],
                'id': ident.pid,
            })
            summary[ident.split]['images'] += 1
            summary[ident.split]['captions'] += len(captions)
    with open(json_path, 'w') as f:
        json.dump(records, f)
    for split in SPLITS:
        with open(os.path.join(out, f'labels_{split}_query.json'), 'w') as f:
            json.dump({r['file_path'].split('/', 1)[1]: r['id']
                       for r in records if r['split'] == split}, f, indent=0)
    return dict(out=out, json=json_path, identities=identities,
                splits=summary, seconds=time.perf_counter() - t0)


def make_contact_sheet(out: str, path: str) -> str:
    """Tile sample images: 8 identities (columns), 2 images each (rows).

    Test identities come first, then val and train ones.

    Args:
        out: A folder written by :func:`generate`.
        path: Destination JPEG (quality 85, tiles 80x200).

    Returns:
        ``path``.
    """
    with open(os.path.join(out, 'reid_raw.json')) as f:
        records = json.load(f)
    num_ids, per_id = 8, 2
    columns: Dict[int, list] = {}
    for split in ('test', 'val', 'train'):
        for r in records:
            if r['split'] != split:
                continue
            if r['id'] not in columns and len(columns) < num_ids:
                columns[r['id']] = []
            if r['id'] in columns and len(columns[r['id']]) < per_id:
                columns[r['id']].append(r['file_path'])
    tw, th, pad = 80, 200, 4
    sheet = np.full(
        (per_id * (th + pad) + pad, len(columns) * (tw + pad) + pad, 3), 255,
        np.uint8)
    for col, paths in enumerate(columns.values()):
        for row, rel in enumerate(paths):
            img = cv2.imread(os.path.join(out, 'imgs', rel))
            img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            y, x = pad + row * (th + pad), pad + col * (tw + pad)
            sheet[y:y + th, x:x + tw] = img
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path

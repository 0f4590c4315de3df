"""A health report of a PEDES-style dataset copy (``tools/check_dataset.py``):
per split the counts, caption lengths, missing and (on request) unreadable
images; the annotation file's problems listed by record index."""
import functools
import itertools
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from mdrl_deploy.utils import first_n
from mdrl_plugin.registry import DATASETS

from .annotation import (
    PedesImage,
    check_data_root,
    find_annotation_file,
    find_missing_files,
    format_problems,
    group_images,
    load_annotation_json,
    parse_pedes_records,
)
from .errors import (
    AnnotationFormatError,
    AnnotationNotFoundError,
    DatasetNotFoundError,
)

__all__ = ['DATASET_TYPES', 'check_dataset']

#: Dataset types :func:`check_dataset` knows.
DATASET_TYPES = ('CUHKPEDES', 'ICFGPEDES', 'RSTPReid')
#: Captions longer than this many words are certainly truncated by the
#: default text length of 64 tokens.
MAX_WORDS = 64


def _stats(values: Sequence[float]) -> str:
    a = np.asarray(values, dtype=np.float64)
    p95 = np.percentile(a, 95, method='nearest')
    return (f'mean {a.mean():.2f}, min {a.min():g}, median '
            f'{np.median(a):g}, p95 {p95:g}, max {a.max():g}')


def check_images_readable(
        paths: Sequence[str]) -> Tuple[List[str], List[Tuple[int, int]]]:
    """Decode every image: the unreadable ``paths`` and the (width, height)
    of the readable ones."""
    import cv2
    bad, sizes = [], []
    for p in paths:
        data = np.fromfile(p, dtype=np.uint8)
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if img is None or img.size == 0:
            bad.append(p)
        else:
            sizes.append((img.shape[1], img.shape[0]))
    return bad, sizes


def report_split(split: str, images: List[PedesImage], img_dir: str,
                 check_images: bool, show: int, blank_records: int = 0,
                 out: Optional[TextIO] = None) -> List[str]:
    """Print the report of one split.

    Args:
        split: Split name.
        images: The split's images (records merged).
        img_dir: Image folder.
        check_images: Decode the images too.
        show: Number of example names.
        blank_records: Records of this split with an empty caption list or
            blank captions (from the record problems).
        out: Stream to print to (default ``sys.stdout``).

    Returns:
        Reasons why the split is unusable (empty when it is fine).
    """
    say = functools.partial(print, file=sys.stdout if out is None else out)
    blank = f'  records with empty or blank captions: {blank_records}'
    if not images:
        say(f'split {split}: no records')
        if blank_records:
            say(blank)
        return [f'split {split!r} has no records']
    pids = Counter(img.pid for img in images)
    caps = [c for img in images for c in img.captions]
    say(f'split {split}: {len(pids)} identities, {len(images)} images, '
        f'{len(caps)} captions')
    say(f'  images per identity: {_stats(list(pids.values()))}')
    say(f'  captions per image: {_stats([len(i.captions) for i in images])}')
    say(blank)
    words = [len(c.split()) for c in caps]
    say(f'  caption length (words): {_stats(words)}')
    long = sum(1 for w in words if w > MAX_WORDS)
    if long:
        say(f'  captions over {MAX_WORDS} words (truncated at 64 tokens): '
            f'{long}')
    merged = sum(len(i.record_indices) - 1 for i in images)
    if merged:
        say(f'  duplicate records merged into one image: {merged}')
    paths = [osp.join(img_dir, i.path) for i in images]
    missing = find_missing_files(paths)
    reasons = []
    if missing:
        rel = [osp.relpath(p, img_dir) if p.startswith(img_dir) else p
               for p in missing]
        say(f'  missing images: {len(missing)} of {len(paths)}: '
            f'{first_n(rel, show)}')
        reasons.append(f'{len(missing)} missing images in split {split!r}')
    else:
        say('  missing images: 0')
    if check_images:
        gone = set(missing)
        present = [p for p in paths if p not in gone]
        bad, sizes = check_images_readable(present)
        if bad:
            names = [osp.relpath(p, img_dir) for p in bad]
            say(f'  unreadable images: {len(bad)} of {len(present)}: '
                f'{first_n(names, show)}')
            reasons.append(
                f'{len(bad)} unreadable images in split {split!r}')
        else:
            say(f'  unreadable images: 0 (decoded {len(present)})')
        if sizes:
            w, h = zip(*sizes)
            say(f'  image width: {_stats(w)}')
            say(f'  image height: {_stats(h)}')
    return reasons


def check_dataset(dataset: str, data_root: str, ann_file: Optional[str] = None,
          img_dir: str = 'imgs', check_images: bool = False, show: int = 5,
          out: Optional[TextIO] = None) -> int:
    """Check a dataset copy and print the report.

    Args:
        dataset: Registered dataset type (one of :data:`DATASET_TYPES`).
        data_root: The dataset folder.
        ann_file: Annotation file name or path; None tries the defaults.
        img_dir: Image folder relative to ``data_root`` (or absolute).
        check_images: Decode every image.
        show: Number of examples listed per problem.
        out: Stream to print to (default ``sys.stdout``).

    Returns:
        0 when the dataset is usable, 1 otherwise.
    """
    out = sys.stdout if out is None else out
    say = functools.partial(print, file=out)
    cls = DATASETS.get(dataset)
    name = cls.METAINFO.get('dataset_name', dataset)
    say(f'{name} ({dataset}) at {data_root}')
    try:
        check_data_root(data_root, name)
        path = find_annotation_file(data_root, cls.DEFAULT_ANN_FILES,
                                    ann_file, name)
        raw = load_annotation_json(path)
    except (DatasetNotFoundError, AnnotationNotFoundError,
            AnnotationFormatError) as e:
        say(f'ERROR: {e}')
        say('RESULT: NOT usable (see the error above)')
        return 1
    say(f'annotation file: {path} ({len(raw)} records)')
    img_dir_abs = img_dir if osp.isabs(img_dir) else osp.join(
        data_root, img_dir)
    say(f'image folder: {img_dir_abs}' +
        ('' if osp.isdir(img_dir_abs) else ' does not exist'))

    records, problems = parse_pedes_records(
        raw, cls.ALLOWED_SPLITS, osp.basename(osp.normpath(img_dir)))
    split_images: Dict[str, List[PedesImage]] = {}
    for split in cls.ALLOWED_SPLITS:
        split_images[split], conflicts = group_images(
            [r for r in records if r.split == split])
        problems.extend(conflicts)

    blank_by_split: Counter = Counter(
        raw[p.index].get('split') for p in problems
        if p.kind in ('captions', 'empty_caption'))
    reasons: List[str] = []
    if problems:
        kinds = Counter(p.kind for p in problems)
        summary = ', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))
        say(f'record problems: {len(problems)} ({summary})')
        say(format_problems(problems, show))
        reasons.append(f'{len(problems)} record problems')
    else:
        say('record problems: none')

    for split in cls.ALLOWED_SPLITS:
        reasons += report_split(split, split_images[split], img_dir_abs,
                                check_images, show,
                                blank_by_split.get(split, 0), out)

    # splits sharing identities or images: reported, not fatal
    for a, b in itertools.combinations(cls.ALLOWED_SPLITS, 2):
        ids = {x.pid for x in split_images[a]} & \
            {x.pid for x in split_images[b]}
        imgs = {x.path for x in split_images[a]} & \
            {x.path for x in split_images[b]}
        if ids or imgs:
            say(f'warning: splits {a} and {b} share {len(ids)} identities '
                f'and {len(imgs)} images')

    if reasons:
        say(f'RESULT: NOT usable: {"; ".join(reasons)}')
        return 1
    say('RESULT: usable')
    return 0

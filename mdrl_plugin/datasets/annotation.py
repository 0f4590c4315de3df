"""Reading and validating PEDES-style annotation files.

The public releases of CUHK-PEDES, ICFG-PEDES and RSTPReid ship one JSON list
of records, one record per image::

    {"split": "train", "id": 1, "file_path": "CUHK01/0363004.png",
     "captions": ["A man in ...", "..."], "processed_tokens": [[...]]}

RSTPReid names the path field ``img_path`` instead of ``file_path``.  The
functions here turn such a file into validated :class:`PedesRecord` objects and
a list of :class:`AnnotationProblem` (nothing is raised for a bad record), so
that the datasets can raise one clear error and ``tools/check_dataset.py`` can
report every problem of a file.
"""
import json
import os
import os.path as osp
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from mdrl_deploy.utils import first_n

from .errors import (
    AnnotationFormatError,
    AnnotationNotFoundError,
    DatasetNotFoundError,
)

__all__ = [
    'PedesRecord', 'PedesImage', 'AnnotationProblem', 'PATH_FIELDS',
    'check_data_root', 'find_annotation_file', 'load_annotation_json',
    'normalize_image_path', 'parse_pedes_records', 'group_images',
    'format_problems', 'find_missing_files', 'split_counts'
]

#: Record fields that may hold the image path, in the order they are tried.
PATH_FIELDS: Tuple[str, ...] = ('file_path', 'img_path')


@dataclass
class PedesRecord:
    """One valid annotation record.

    Attributes:
        index: Position of the record in the JSON list (0-based).
        split: Split name of the record (None when the parser accepted
            any split and the record has none).
        pid: Raw identity id.
        path: Normalised image path, relative to the image folder (or
            absolute when the file gives an absolute path).
        captions: Stripped, non-empty captions.
    """
    index: int
    split: Optional[str]
    pid: int
    path: str
    captions: List[str]


@dataclass
class PedesImage:
    """One image of a split with all its captions (duplicates merged).

    Attributes:
        path: Normalised image path (see :class:`PedesRecord`).
        pid: Raw identity id.
        captions: All captions of the image, in file order.
        record_indices: Indices of the records that name this image.
    """
    path: str
    pid: int
    captions: List[str]
    record_indices: List[int] = field(default_factory=list)


@dataclass
class AnnotationProblem:
    """A problem found in an annotation file.

    Attributes:
        kind: One of ``'record'`` (not an object), ``'split'``, ``'id'``,
            ``'path'``, ``'captions'`` (missing or empty list),
            ``'empty_caption'`` (a blank string in the list) and
            ``'id_conflict'`` (one image listed with two ids).
        index: Record index in the JSON list.
        file_path: The record's image path as written, if it had one.
        message: Human readable explanation, saying what was expected.
    """
    kind: str
    index: int
    file_path: Optional[str]
    message: str

    def __str__(self) -> str:
        where = f'record {self.index}'
        if self.file_path is not None:
            where += f' (file_path {self.file_path!r})'
        return f'{where}: {self.message}'


def check_data_root(data_root: str, dataset_name: str,
                    expected: str = 'imgs/ and the annotation JSON') -> str:
    """Check that ``data_root`` is an existing folder.

    Args:
        data_root: The dataset folder.
        dataset_name: Name used in the error message.
        expected: What the folder should hold (for the message).

    Returns:
        ``data_root`` unchanged.

    Raises:
        DatasetNotFoundError: If the folder does not exist.
    """
    if not data_root:
        raise DatasetNotFoundError(
            f'{dataset_name}: data_root is empty; pass the dataset folder '
            f'that holds {expected}.')
    if not osp.isdir(data_root):
        what = 'is not a folder' if osp.exists(data_root) else \
            'does not exist'
        raise DatasetNotFoundError(
            f'{dataset_name}: data_root {data_root!r} {what}; expected the '
            f'dataset folder that holds {expected}.')
    return data_root


def find_annotation_file(data_root: str,
                         candidates: Sequence[str],
                         ann_file: Optional[str] = None,
                         dataset_name: str = 'dataset') -> str:
    """Locate the annotation JSON of a dataset.

    Args:
        data_root: The dataset folder; relative names are looked up in it.
        candidates: File names tried in order when ``ann_file`` is None.
        ann_file: An explicit file name (relative to ``data_root``) or
            absolute path; when given, only this file is tried.
        dataset_name: Name used in the error message.

    Returns:
        The path of the annotation file.

    Raises:
        AnnotationNotFoundError: If no file was found; the message lists
            every path tried.
    """
    names = [ann_file] if ann_file else list(candidates)
    if not names:
        raise AnnotationNotFoundError(
            f'{dataset_name}: no annotation file given; pass ann_file=<the '
            f'JSON file of the dataset>.')
    tried = []
    for name in names:
        path = name if osp.isabs(name) else osp.join(data_root, name)
        if osp.isfile(path):
            return path
        tried.append(path)
    hint = ''
    subdirs = sorted(
        d for d in os.listdir(data_root) if osp.isdir(osp.join(data_root, d))
    ) if osp.isdir(data_root) else []
    nested = [
        d for d in subdirs
        if any(osp.isfile(osp.join(data_root, d, n)) for n in names
               if not osp.isabs(n))
    ]
    if nested:
        hint = (f' The file exists in the sub-folder {nested[0]!r}: did you '
                f'mean data_root={osp.join(data_root, nested[0])!r}?')
    elif not ann_file:
        hint = ' If your copy names it differently, pass ann_file=<name>.'
    raise AnnotationNotFoundError(
        f'{dataset_name}: no annotation file found; tried '
        f'{", ".join(repr(t) for t in tried)}.{hint}')


def load_annotation_json(path: str) -> list:
    """Load a JSON list of records.

    Args:
        path: The annotation file.

    Returns:
        The list of records (not yet validated).

    Raises:
        AnnotationFormatError: If the file is not valid UTF-8 JSON (the
            message gives line and column) or is not a JSON list.
    """
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8-sig')
    except UnicodeDecodeError as e:
        raise AnnotationFormatError(
            f'{path}: not a UTF-8 text file (byte {e.start}: {e.reason}); '
            f'expected a JSON list of records.') from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationFormatError(
            f'{path}: malformed JSON at line {e.lineno}, column {e.colno}: '
            f'{e.msg}.') from None
    if not isinstance(data, list):
        detail = (f'an object with keys {first_n(sorted(map(repr, data)))}'
                  if isinstance(data, dict) else type(data).__name__)
        raise AnnotationFormatError(
            f'{path}: expected a JSON list of records at the top level, got '
            f'{detail}.')
    return data


def normalize_image_path(path: str, img_dir_name: str = 'imgs') -> str:
    """Normalise an image path as written in a record.

    Backslashes become ``/``, a leading ``./`` is removed, and a leading
    ``<img_dir_name>/`` is removed because the releases give paths relative
    to the image folder while some copies prefix them with ``imgs/``.
    Absolute paths are kept as they are (apart from the backslashes).

    Args:
        path: The path as written in the record.
        img_dir_name: Name of the image folder (the last component of the
            image prefix).

    Returns:
        The normalised path.
    """
    p = path.strip().replace('\\', '/')
    while p.startswith('./'):
        p = p[2:]
    if img_dir_name and not p.startswith('/') and \
            p.startswith(img_dir_name.rstrip('/') + '/'):
        p = p[len(img_dir_name.rstrip('/')) + 1:]
    return p


def _parse_id(value) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_pedes_records(
        raw_records: list,
        allowed_splits: Optional[Sequence[str]],
        img_dir_name: str = 'imgs',
        require_captions: bool = True
) -> Tuple[List[PedesRecord], List[AnnotationProblem]]:
    """Validate and normalise the records of an annotation file.

    A record needs ``split`` (one of ``allowed_splits``), ``id`` (an int or a
    string of digits), a path in ``file_path`` or ``img_path`` and
    ``captions`` (a non-empty list of non-empty strings). Captions are
    stripped; other fields such as ``processed_tokens`` are ignored.

    This is the one parser of PEDES records: the datasets and
    ``tools/check_dataset.py`` use it. ``allowed_splits=None`` and
    ``require_captions=False`` read records for their image paths and ids
    only (search labels are a ``{path: id}`` JSON file now, docs/search.md,
    which shows how to write one from these records).

    Args:
        raw_records: The JSON list.
        allowed_splits: Split values a record may have; None accepts any
            split, or none (the record's ``split`` is then None).
        img_dir_name: Passed to :func:`normalize_image_path`.
        require_captions: Check ``captions``; when False the field is not
            read (every record gets ``captions=[]``).

    Returns:
        The valid records and the problems found. A record with a blank
        caption among valid ones is kept with its other captions and also
        reported; every other problem drops the record.
    """
    allowed = None if allowed_splits is None else tuple(allowed_splits)
    records: List[PedesRecord] = []
    problems: List[AnnotationProblem] = []
    for i, rec in enumerate(raw_records):
        if not isinstance(rec, dict):
            problems.append(AnnotationProblem(
                'record', i, None,
                f'expected a JSON object, got {type(rec).__name__}'))
            continue
        raw_path = None
        path_field = None
        for key in PATH_FIELDS:
            if key in rec:
                raw_path, path_field = rec[key], key
                break
        shown_path = raw_path if isinstance(raw_path, str) else None
        ok = True
        if path_field is None:
            problems.append(AnnotationProblem(
                'path', i, None,
                f'no image path; expected one of the fields '
                f'{list(PATH_FIELDS)}'
                f' (got fields {sorted(rec)})'))
            ok = False
        elif not isinstance(raw_path, str) or not raw_path.strip():
            problems.append(AnnotationProblem(
                'path', i, None,
                f'{path_field!r} must be a non-empty string, got '
                f'{raw_path!r}'))
            ok = False
        split = rec.get('split')
        if allowed is not None and split not in allowed:
            if 'split' not in rec:
                msg = 'no \'split\' field'
            else:
                msg = f'unknown split {split!r}'
            problems.append(AnnotationProblem(
                'split', i, shown_path,
                f'{msg}; allowed values: {", ".join(allowed)}'))
            ok = False
        pid = _parse_id(rec.get('id'))
        if pid is None:
            got = repr(rec['id']) if 'id' in rec else 'no \'id\' field'
            problems.append(AnnotationProblem(
                'id', i, shown_path,
                f'expected an integer identity in \'id\', got {got}'))
            ok = False
        caps = rec.get('captions')
        if not require_captions:
            captions = []
        elif 'captions' not in rec:
            problems.append(AnnotationProblem(
                'captions', i, shown_path,
                'no \'captions\' field; expected a non-empty list of '
                'strings'))
            ok = False
            captions = []
        elif not isinstance(caps, list) or not all(
                isinstance(c, str) for c in caps):
            problems.append(AnnotationProblem(
                'captions', i, shown_path,
                f'\'captions\' must be a list of strings, got '
                f'{type(caps).__name__}'
                + ('' if isinstance(caps, list) else f' {caps!r:.60}')))
            ok = False
            captions = []
        else:
            captions = [c.strip() for c in caps]
            n_blank = sum(1 for c in captions if not c)
            captions = [c for c in captions if c]
            if not captions:
                problems.append(AnnotationProblem(
                    'captions', i, shown_path,
                    '\'captions\' is empty' if not caps else
                    f'all {len(caps)} captions are blank; expected at least '
                    f'one non-empty caption'))
                ok = False
            elif n_blank:
                problems.append(AnnotationProblem(
                    'empty_caption', i, shown_path,
                    f'{n_blank} of {len(caps)} captions are blank'))
        if ok:
            records.append(PedesRecord(
                index=i, split=split, pid=pid,
                path=normalize_image_path(raw_path, img_dir_name),
                captions=captions))
    return records, problems


def group_images(
        records: Sequence[PedesRecord]
) -> Tuple[List[PedesImage], List[AnnotationProblem]]:
    """Merge the records of one split into images.

    Records naming the same image are merged (captions concatenated in file
    order). Images keep the order of their first record.

    Args:
        records: Records of one split.

    Returns:
        The images and one ``'id_conflict'`` problem per image listed with
        different ids.
    """
    images: Dict[str, PedesImage] = {}
    problems: List[AnnotationProblem] = []
    for rec in records:
        img = images.get(rec.path)
        if img is None:
            images[rec.path] = PedesImage(rec.path, rec.pid,
                                          list(rec.captions), [rec.index])
            continue
        if img.pid != rec.pid:
            problems.append(AnnotationProblem(
                'id_conflict', rec.index, rec.path,
                f'image also listed in record {img.record_indices[0]} with '
                f'id {img.pid}, here with id {rec.pid}; expected one id per '
                f'image'))
            continue
        img.captions.extend(rec.captions)
        img.record_indices.append(rec.index)
    return list(images.values()), problems


def find_missing_files(paths: Sequence[str]) -> List[str]:
    """Return the paths that do not exist (one ``os.path.exists`` each).

    Args:
        paths: Absolute or working-directory-relative file paths.

    Returns:
        The missing ones, in input order.
    """
    exists = osp.exists
    return [p for p in paths if not exists(p)]


def split_counts(records: Sequence[PedesRecord]) -> Dict[str, int]:
    """Number of records per split, in first-seen order."""
    return dict(Counter(r.split for r in records))


def format_problems(problems: Sequence[AnnotationProblem],
                    limit: int = 5) -> str:
    """Format the first ``limit`` problems, one per line.

    Args:
        problems: Problems to show.
        limit: How many to show; the rest are counted.

    Returns:
        A multi-line string.
    """
    return first_n([f'  {p}' for p in problems], limit, sep='\n')

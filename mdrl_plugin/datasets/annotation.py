"""Reading and validating PEDES-style annotation files.

CUHK-PEDES, ICFG-PEDES and RSTPReid ship one JSON list of records, one per
image: ``{"split", "id", "file_path" (RSTPReid: "img_path"), "captions",
...}``. Bad records become :class:`AnnotationProblem` entries instead of
exceptions, so that the datasets raise one clear error and
``tools/check_dataset.py`` reports every problem of a file.
"""
import json
import os
import os.path as osp
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
    'format_problems', 'find_missing_files'
]

#: Record fields that may hold the image path, in the order they are tried.
PATH_FIELDS: Tuple[str, ...] = ('file_path', 'img_path')


@dataclass
class PedesRecord:
    """One valid record: its index in the JSON list, split, raw identity,
    normalised image path and stripped non-blank captions."""
    index: int
    split: str
    pid: int
    path: str
    captions: List[str]


@dataclass
class PedesImage:
    """One image of a split with the captions of every record naming it."""
    path: str
    pid: int
    captions: List[str]
    record_indices: List[int] = field(default_factory=list)


@dataclass
class AnnotationProblem:
    """A problem of record ``index``.

    ``kind`` is ``'record'`` (not an object), ``'split'``, ``'id'``,
    ``'path'``, ``'captions'`` (missing, empty or all blank),
    ``'empty_caption'`` (some blank) or ``'id_conflict'`` (one image, two
    ids); ``file_path`` is the record's path as written, if any.
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


def check_data_root(data_root: str, dataset_name: str) -> str:
    """Return ``data_root`` if it is an existing folder.

    Raises:
        DatasetNotFoundError: It is empty, missing or not a folder.
    """
    expected = 'imgs/ and the annotation JSON'
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
        candidates: Names tried in order when ``ann_file`` is None.
        ann_file: The only name (or absolute path) tried when given.
        dataset_name: Name used in the error message.

    Returns:
        The path of the annotation file.

    Raises:
        AnnotationNotFoundError: Nothing found; the message lists every path
            tried and points at a sub-folder holding the file.
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
    """Load the JSON list of records (not yet validated) from ``path``.

    Raises:
        AnnotationFormatError: Not UTF-8, malformed JSON (line and column
            given) or not a list.
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

    Backslashes become ``/``; a leading ``./`` and a leading
    ``<img_dir_name>/`` (some copies prefix the release's paths with it) are
    removed. Absolute paths keep their components.

    Args:
        path: The path as written.
        img_dir_name: The image folder's name.

    Returns:
        The path relative to the image folder (or absolute).
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


def _parse_captions(rec: dict) -> Tuple[List[str], Optional[Tuple[str, str]]]:
    """The stripped non-blank captions and the ``(kind, message)`` of the
    problem of ``rec['captions']``, if any."""
    if 'captions' not in rec:
        return [], ('captions', 'no \'captions\' field; expected a non-empty '
                    'list of strings')
    caps = rec['captions']
    if not isinstance(caps, list) or not all(
            isinstance(c, str) for c in caps):
        detail = '' if isinstance(caps, list) else f' {caps!r:.60}'
        return [], ('captions', '\'captions\' must be a list of strings, got '
                    f'{type(caps).__name__}{detail}')
    captions = [c.strip() for c in caps if c.strip()]
    if not caps:
        return [], ('captions', '\'captions\' is empty')
    if not captions:
        return [], ('captions', f'all {len(caps)} captions are blank; '
                    f'expected at least one non-empty caption')
    if len(captions) < len(caps):
        return captions, ('empty_caption', f'{len(caps) - len(captions)} of '
                          f'{len(caps)} captions are blank')
    return captions, None


def parse_pedes_records(
        raw_records: list,
        allowed_splits: Sequence[str],
        img_dir_name: str = 'imgs'
) -> Tuple[List[PedesRecord], List[AnnotationProblem]]:
    """Validate and normalise the records of an annotation file.

    A record needs ``split`` (one of ``allowed_splits``), ``id`` (an int or a
    string of digits), a path in ``file_path`` or ``img_path`` and
    ``captions`` (a non-empty list of strings, stripped); other fields such
    as ``processed_tokens`` are ignored. The one parser of PEDES records,
    used by the datasets and ``tools/check_dataset.py``.

    Args:
        raw_records: The JSON list.
        allowed_splits: Split values a record may have.
        img_dir_name: Passed to :func:`normalize_image_path`.

    Returns:
        The valid records and the problems found. A record with some blank
        captions is kept with the others and also reported; every other
        problem drops the record.
    """
    allowed = tuple(allowed_splits)
    records: List[PedesRecord] = []
    problems: List[AnnotationProblem] = []
    for i, rec in enumerate(raw_records):
        if not isinstance(rec, dict):
            problems.append(AnnotationProblem(
                'record', i, None,
                f'expected a JSON object, got {type(rec).__name__}'))
            continue
        found: List[Tuple[str, str]] = []  # (kind, message)
        path_field = next((k for k in PATH_FIELDS if k in rec), None)
        raw_path = rec.get(path_field)
        if path_field is None:
            found.append(('path', f'no image path; expected one of the '
                          f'fields {list(PATH_FIELDS)} (got fields '
                          f'{sorted(rec)})'))
        elif not isinstance(raw_path, str) or not raw_path.strip():
            found.append(('path', f'{path_field!r} must be a non-empty '
                          f'string, got {raw_path!r}'))
        split = rec.get('split')
        if split not in allowed:
            what = f'unknown split {split!r}' if 'split' in rec else \
                'no \'split\' field'
            found.append(('split', f'{what}; allowed values: '
                          f'{", ".join(allowed)}'))
        pid = _parse_id(rec.get('id'))
        if pid is None:
            got = repr(rec['id']) if 'id' in rec else 'no \'id\' field'
            found.append(('id', 'expected an integer identity in \'id\', '
                          f'got {got}'))
        captions, caption_problem = _parse_captions(rec)
        found += [caption_problem] if caption_problem else []
        shown = raw_path if isinstance(raw_path, str) else None
        problems += [
            AnnotationProblem(kind, i, None if kind == 'path' else shown,
                              message) for kind, message in found]
        if all(kind == 'empty_caption' for kind, _ in found):
            records.append(PedesRecord(
                i, split, pid, normalize_image_path(raw_path, img_dir_name),
                captions))
    return records, problems


def group_images(
        records: Sequence[PedesRecord]
) -> Tuple[List[PedesImage], List[AnnotationProblem]]:
    """Merge the records of one split that name the same image.

    Args:
        records: Records of one split.

    Returns:
        The images, in the order of their first record, with the captions
        in file order, and one ``'id_conflict'`` problem per record naming
        an image already listed with another id.
    """
    images: Dict[str, PedesImage] = {}
    problems: List[AnnotationProblem] = []
    for rec in records:
        img = images.get(rec.path)
        if img is None:
            images[rec.path] = PedesImage(rec.path, rec.pid,
                                          list(rec.captions), [rec.index])
        elif img.pid != rec.pid:
            problems.append(AnnotationProblem(
                'id_conflict', rec.index, rec.path,
                f'image also listed in record {img.record_indices[0]} with '
                f'id {img.pid}, here with id {rec.pid}; expected one id per '
                f'image'))
        else:
            img.captions.extend(rec.captions)
            img.record_indices.append(rec.index)
    return list(images.values()), problems


def find_missing_files(paths: Sequence[str]) -> List[str]:
    """The ``paths`` that do not exist, in input order."""
    return [p for p in paths if not osp.exists(p)]


def format_problems(problems: Sequence[AnnotationProblem],
                    limit: int = 5) -> str:
    """The first ``limit`` problems, one per line, then the rest counted."""
    return first_n([f'  {p}' for p in problems], limit, sep='\n')

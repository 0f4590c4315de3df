"""Identity labels of gallery images: PEDES annotation files on top of the
torch-free JSON maps of :mod:`mdrl_deploy.labels`."""
from typing import Dict, Optional, Sequence

from mdrl_deploy.labels import (Label, check_label, label_candidates,
                                resolve_label_map)
from mdrl_deploy.labels import load_labels as _load_labels
from mdrl_plugin.datasets.annotation import (PATH_FIELDS, AnnotationProblem,
                                             group_images,
                                             parse_pedes_records)

__all__ = ['load_labels', 'read_pedes_labels', 'resolve_label_map',
           'label_candidates', 'check_label', 'Label']


_NEEDS = ('a PEDES annotation record needs "file_path" (CUHK-PEDES, '
          'ICFG-PEDES) or "img_path" (RSTPReid) and "id"')


def read_pedes_labels(records: Sequence, path: str) -> Dict[str, Label]:
    """``{image path: id}`` of a PEDES annotation list (JSON list ``records``
    of file ``path``).

    The records are parsed by the datasets' parser
    (:func:`~mdrl_plugin.datasets.annotation.parse_pedes_records`, any
    split, captions not read); its first problem becomes the error.
    """
    parsed, problems = parse_pedes_records(
        list(records), allowed_splits=None, img_dir_name='',
        require_captions=False)
    if problems:
        raise ValueError(_explain(problems[0], records[problems[0].index],
                                  path))
    images, conflicts = group_images(parsed)
    mapping = {img.path: img.pid for img in images}
    if conflicts:
        clash = conflicts[0]
        pid = next(r.pid for r in parsed if r.index == clash.index)
        raise ValueError(
            f'{path}: image {clash.file_path!r} is listed with ids '
            f'{mapping[clash.file_path]!r} and {pid!r} (record '
            f'{clash.index}); expected one id per image')
    return mapping


def _explain(problem: AnnotationProblem, rec, path: str) -> str:
    """The labels reader's message for the parser's ``problem``."""
    i = problem.index
    if problem.kind == 'record':
        return (f'{path}: record {i} is {type(rec).__name__}, expected an '
                'object with "file_path" (CUHK-PEDES, ICFG-PEDES) or '
                '"img_path" (RSTPReid) and "id"')
    has_path = any(k in rec for k in PATH_FIELDS)
    if not has_path or 'id' not in rec:
        return f'{path}: record {i} has fields {sorted(rec)}; {_NEEDS}'
    if problem.kind == 'id':
        where = f'{path}, record {i} ({problem.file_path!r}) field "id"'
        check_label(rec['id'], where)  # raises for a non-label
        return (f'{where}: a PEDES identity must be an integer (or a string '
                f'of digits), got {rec["id"]!r}')
    return f'{path}: {problem}'


def load_labels(path: str, root: Optional[str] = None) -> Dict[str, Label]:
    """:func:`mdrl_deploy.labels.load_labels` with PEDES annotation lists.

    Args:
        path: A JSON ``{"image path": label}`` or a PEDES annotation file
            (records read by the datasets' parser, any split).
        root: The gallery folder (relative paths, see
            :func:`~mdrl_deploy.labels.label_candidates`).

    Returns:
        Absolute normalised image path to label.
    """
    return _load_labels(path, root, read_records=read_pedes_labels)

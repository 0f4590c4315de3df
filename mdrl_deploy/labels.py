"""Identity labels of gallery images, torch-free: JSON maps and path rules.

One implementation for both search paths. A labels file is a JSON object
``{"image path": label}``; PEDES annotation lists (CUHK-PEDES, ICFG-PEDES,
RSTPReid) are read with the datasets' record parser, which needs the plugin:
:func:`mdrl_plugin.apis.load_labels` passes it in as ``read_records``.
"""
import json
import os.path as osp
from typing import Callable, Dict, List, Mapping, Optional, Union

__all__ = ['Label', 'check_label', 'label_from_text', 'label_candidates',
           'resolve_label_map', 'load_labels']

Label = Union[int, str]


def check_label(value, where: str) -> Label:
    """Accept an int or a non-empty str identity label.

    Args:
        value: The label.
        where: Words naming where it came from (for the error).

    Returns:
        The label.

    Raises:
        ValueError: For any other type (bool, float, null, list ...).
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip()):
        raise ValueError(f'{where}: an identity label must be an int or a '
                         f'non-empty string, got {value!r}')
    return value


def label_from_text(text: str) -> Label:
    """A label typed on a command line: ``'12'`` is 12 (PEDES ids are ints),
    other text stays text."""
    text = text.strip()
    return int(text) if text.lstrip('-').isdigit() else text


def label_candidates(path: str, root: Optional[str]) -> List[str]:
    """Absolute paths an annotation path may mean.

    Absolute paths mean themselves. A relative path is tried relative to
    ``root`` and to ``root/imgs`` (the PEDES layouts), and, when it starts
    with ``imgs/``, also without that prefix (for a gallery that *is* the
    ``imgs`` folder). Without a root, relative paths are relative to the
    working directory.

    Args:
        path: The path as written (``\\`` is read as ``/``).
        root: The gallery folder, or None.

    Returns:
        Normalised absolute candidate paths, most likely first.
    """
    p = path.strip().replace('\\', '/')
    if osp.isabs(p):
        return [osp.normpath(p)]
    base = osp.abspath(root) if root else osp.abspath('.')
    out = [osp.normpath(osp.join(base, p)),
           osp.normpath(osp.join(base, 'imgs', p))]
    if p.startswith('imgs/') or p.startswith('./imgs/'):
        out.append(osp.normpath(osp.join(base, p.split('imgs/', 1)[1])))
    return out


def resolve_label_map(mapping: Mapping[str, Label], root: Optional[str],
                      source: str = 'labels') -> Dict[str, Label]:
    """Turn ``{path: label}`` with relative paths into absolute keys.

    Args:
        mapping: Image path (absolute, or relative to ``root`` or its
            ``imgs/``) to label.
        root: The gallery folder.
        source: Where the map came from (for errors).

    Returns:
        Absolute normalised path (every candidate of
        :func:`label_candidates`) to label.
    """
    primary: Dict[str, Label] = {}
    origin: Dict[str, str] = {}
    secondary: Dict[str, Label] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key.strip():
            raise ValueError(f'{source}: image paths must be non-empty '
                             f'strings, got {key!r}')
        label = check_label(value, f'{source}, image {key!r}')
        first, *others = label_candidates(key, root)
        if first in primary and primary[first] != label:
            raise ValueError(
                f'{source}: image {first!r} is listed twice with different '
                f'labels ({primary[first]!r} for {origin[first]!r} and '
                f'{label!r} for {key!r})')
        primary[first] = label
        origin[first] = key
        for cand in others:
            secondary.setdefault(cand, label)
    secondary.update(primary)
    return secondary


def load_labels(path: str, root: Optional[str] = None,
                read_records: Optional[Callable[[list, str],
                                                Mapping[str, Label]]] = None
                ) -> Dict[str, Label]:
    """Read identity labels of gallery images from a JSON file.

    Two formats are accepted:

    * a JSON object ``{"image path": label, ...}`` (labels int or str);
    * a PEDES annotation file: a JSON list of records with ``id`` and
      ``file_path`` (CUHK-PEDES, ICFG-PEDES) or ``img_path`` (RSTPReid),
      turned into ``{path: id}`` by ``read_records(records, path)``.

    Relative image paths are relative to the gallery folder ``root`` or to
    ``root/imgs`` (see :func:`label_candidates`), and, failing those, to the
    labels file's own folder or its ``imgs/``: a PEDES annotation file sits
    next to ``imgs/``, so it also labels a gallery that is a sub-folder of
    ``imgs/``. Paths resolved against ``root`` win.

    Args:
        path: The JSON file.
        root: The gallery folder.
        read_records: Reader of PEDES record lists (None: lists are refused
            with a message saying what reads them).

    Returns:
        Absolute normalised image path to label.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not one of the two formats (the message names
            the file and the offending entry).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'Labels file {path!r} does not exist.')
    try:
        with open(path, 'rb') as f:
            data = json.loads(f.read().decode('utf-8-sig'))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f'Labels file {path!r} is not valid UTF-8 JSON ({err}); expected '
            'a JSON object {"image path": id} or a PEDES annotation list.'
        ) from err
    source = f'Labels file {path!r}'
    if isinstance(data, list):
        if read_records is None:
            raise ValueError(
                f'{source} is a PEDES annotation list, which only the plugin '
                'reads (mdrl_plugin.apis.load_labels, needs torch); without '
                'it give a JSON object {"image path": id}.')
        data = read_records(data, path)
    elif not isinstance(data, dict):
        raise ValueError(
            f'{source} holds a JSON {type(data).__name__}; '
            'expected an object {"image path": id} or a PEDES annotation list '
            'of records with "file_path"/"img_path" and "id".')
    out = resolve_label_map(data, root, source=source)
    file_dir = osp.dirname(osp.abspath(path))
    if root is None or osp.abspath(root) != file_dir:
        for key, label in resolve_label_map(data, file_dir,
                                            source=source).items():
            out.setdefault(key, label)
    return out

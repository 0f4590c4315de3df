"""The ``mdrl_export.json`` manifest of an export folder written by
``tools/export.py`` (fields and graphs: docs/deploy.md, "Export")."""
import json
import os.path as osp
from typing import Any, Dict

MANIFEST_NAME = 'mdrl_export.json'  #: The manifest's file name.
EXPORT_FORMAT = 'mdrl-onnx-export'  #: Its ``format``.
EXPORT_VERSION = 1  #: Its ``version``.
_REQUIRED = dict(image=('height', 'width', 'mean', 'std', 'channel_order'),
                 text=('max_length', 'tokenizer'), feature=('dim', 'layout'),
                 files=('image', 'text'))


class ExportFormatError(ValueError):
    """The folder is not a complete export written by ``tools/export.py``."""


def load_manifest(export_dir: str) -> Dict[str, Any]:
    """Read and check the manifest of an export folder.

    Args:
        export_dir: Folder written by ``tools/export.py``.

    Returns:
        The manifest; ``files`` (``tokenizer`` added) as absolute paths.
    """
    if not osp.isdir(export_dir):
        raise FileNotFoundError(
            f'Export folder {export_dir!r} does not exist; write one with '
            '`python tools/export.py CONFIG CHECKPOINT --out DIR`.')
    path = osp.join(export_dir, MANIFEST_NAME)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{export_dir!r} has no {MANIFEST_NAME}: it is not an export '
            'folder written by `python tools/export.py CONFIG CHECKPOINT '
            '--out DIR`.')
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise ExportFormatError(f'{path!r} is not valid JSON: {err}') from err
    found = manifest.get('format') if isinstance(manifest, dict) else None
    if found != EXPORT_FORMAT:
        raise ExportFormatError(
            f'{path!r}: format is {found!r}, expected {EXPORT_FORMAT!r}.')
    if manifest.get('version') != EXPORT_VERSION:
        raise ExportFormatError(
            f'{path!r}: export version {manifest.get("version")!r} is not '
            f'supported (this code reads version {EXPORT_VERSION}); export '
            'the checkpoint again.')
    for section, keys in _REQUIRED.items():
        part = manifest.get(section)
        missing = [k for k in keys
                   if not isinstance(part, dict) or k not in part]
        if missing:
            raise ExportFormatError(
                f'{path!r}: section {section!r} lacks {missing}.')
    if not isinstance(manifest.get('fingerprint'), dict):
        raise ExportFormatError(f'{path!r}: no "fingerprint" object.')
    root = osp.abspath(export_dir)
    files = {k: osp.join(root, v) for k, v in manifest['files'].items()}
    files['tokenizer'] = osp.join(root, manifest['text']['tokenizer'])
    for key, file in files.items():
        if not osp.exists(file):
            raise FileNotFoundError(
                f'{path!r} names the {key} file {file!r}, which does not '
                'exist; export the checkpoint again.')
    manifest['files'] = files
    return manifest

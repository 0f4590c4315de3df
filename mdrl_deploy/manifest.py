"""The export folder of ``tools/export.py``: file names and the
``mdrl_export.json`` manifest (fields: docs/deploy.md, "Export").

``image_encoder.onnx`` maps normalised ``images [B, 3, H, W]`` and
``text_encoder.onnx`` ``input_ids, attention_mask [B, L]`` to ``features
[B, D]``; ``tokenizer/`` holds the fast tokenizer files. The manifest's
``mean``/``std`` are on the 0-255 scale, in its ``channel_order``.
"""
import json
import os.path as osp
from typing import Any, Dict

__all__ = [
    'MANIFEST_NAME', 'EXPORT_FORMAT', 'EXPORT_VERSION', 'IMAGE_ONNX',
    'TEXT_ONNX', 'TOKENIZER_DIR', 'ExportFormatError', 'load_manifest'
]

#: The manifest's file name, ``format`` and ``version``.
MANIFEST_NAME = 'mdrl_export.json'
EXPORT_FORMAT = 'mdrl-onnx-export'
EXPORT_VERSION = 1
#: Default file names inside an export folder.
IMAGE_ONNX = 'image_encoder.onnx'
TEXT_ONNX = 'text_encoder.onnx'
TOKENIZER_DIR = 'tokenizer'

_REQUIRED = {
    'image': ('height', 'width', 'mean', 'std', 'channel_order'),
    'text': ('max_length', 'tokenizer'),
    'feature': ('dim', 'layout'),
    'files': ('image', 'text'),
}


class ExportFormatError(ValueError):
    """The folder is not a complete export written by ``tools/export.py``."""


def load_manifest(export_dir: str) -> Dict[str, Any]:
    """Read and check the manifest of an export folder.

    Args:
        export_dir: Folder written by ``tools/export.py``.

    Returns:
        The manifest dict; ``files`` and ``text.tokenizer`` are turned into
        absolute paths.

    Raises:
        FileNotFoundError: If the folder, the manifest or a file it names is
            missing.
        ExportFormatError: If the manifest is not valid.
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
    if not isinstance(manifest, dict) or found != EXPORT_FORMAT:
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

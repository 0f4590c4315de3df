"""Torch-free deployment of MDRL: ONNX Runtime search and the web server.

A separate top-level package on purpose: importing anything under
``mdrl_plugin`` runs ``mdrl_plugin/__init__.py``, which registers every
component and therefore imports torch and mmengine. ``mdrl_deploy`` imports
neither (a test checks it in a process where importing them raises), so an
export folder can be served on a machine with only ``onnxruntime``,
``tokenizers``, NumPy and Pillow. The export itself (which needs torch) lives
in :mod:`mdrl_plugin.deploy`.
"""
from .index import (GalleryIndex, IndexFormatError, IndexMismatchError,
                    StaleIndexError)
from .manifest import ExportFormatError, load_manifest
from .ort_search import (IMAGE_EXTENSIONS, OrtSearcher, QueryTruncatedWarning,
                         SearchHit, SkippedImagesWarning, scan_images,
                         topk_cosine)
from .preprocess import ImagePreprocessor, TextTokenizer, resize_bilinear

__all__ = [
    'OrtSearcher', 'SearchHit', 'GalleryIndex', 'IndexFormatError',
    'IndexMismatchError', 'StaleIndexError', 'ExportFormatError',
    'load_manifest', 'ImagePreprocessor', 'TextTokenizer', 'resize_bilinear',
    'IMAGE_EXTENSIONS', 'scan_images', 'topk_cosine', 'QueryTruncatedWarning',
    'SkippedImagesWarning'
]

"""Torch-free deployment of MDRL: search, ranking, index and the web server.

A separate top-level package on purpose: importing anything under
``mdrl_plugin`` runs ``mdrl_plugin/__init__.py``, which imports torch and
MMEngine. ``mdrl_deploy`` imports neither, nor anything of ``mdrl_plugin``
(a test imports each module where they raise), so an export folder is
served on a machine with only ``onnxruntime``, ``tokenizers``, NumPy and
Pillow. It is also the one home of what both searchers share; the plugin
(``mdrl_plugin.apis``, the ONNX export in ``mdrl_plugin.export``) imports
it, never the other way round.
"""
from .index import (
                    GalleryIndex,
                    IndexFormatError,
                    IndexMismatchError,
                    StaleIndexError,
)
from .manifest import ExportFormatError, load_manifest
from .ort_search import OrtSearcher
from .preprocess import ImagePreprocessor, TextTokenizer, resize_bilinear
from .ranking import Ranker, summarize, topk_cosine
from .search import (
                    IMAGE_EXTENSIONS,
                    GallerySearcher,
                    QueryTruncatedWarning,
                    SearchHit,
                    SkippedImagesWarning,
                    UnmatchedLabelsWarning,
                    check_queries,
                    read_labels,
                    scan_images,
)

__all__ = [
    'OrtSearcher', 'GallerySearcher', 'SearchHit', 'GalleryIndex',
    'IndexFormatError', 'IndexMismatchError', 'StaleIndexError',
    'ExportFormatError', 'load_manifest', 'read_labels', 'ImagePreprocessor',
    'TextTokenizer', 'resize_bilinear', 'IMAGE_EXTENSIONS', 'scan_images',
    'check_queries', 'topk_cosine', 'summarize', 'Ranker',
    'QueryTruncatedWarning', 'SkippedImagesWarning', 'UnmatchedLabelsWarning'
]

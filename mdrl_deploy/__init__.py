"""Torch-free deployment of MDRL: search, ranking, index and the web server.

It needs only ``onnxruntime``, ``tokenizers``, NumPy and Pillow, and imports
nothing of ``mdrl_plugin`` (which imports torch); the plugin imports it.
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

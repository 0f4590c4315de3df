"""Torch-free deployment of MDRL: search, ranking, index and the web server.

A separate top-level package on purpose: importing anything under
``mdrl_plugin`` runs ``mdrl_plugin/__init__.py``, which registers every
component and therefore imports torch and mmengine. ``mdrl_deploy`` imports
neither (a test checks it in a process where importing them raises), so an
export folder can be served on a machine with only ``onnxruntime``,
``tokenizers``, NumPy and Pillow. It is also the one home of what both
search paths share (hits, folder scan, query checks, labels, index, ranking):
``mdrl_plugin.apis`` imports it. The export itself (which needs torch)
lives in :mod:`mdrl_plugin.export`.
"""
from .index import (GalleryIndex, IndexFormatError, IndexMismatchError,
                    StaleIndexError)
from .labels import label_from_text, load_labels
from .manifest import ExportFormatError, load_manifest
from .ort_search import OrtSearcher
from .preprocess import ImagePreprocessor, TextTokenizer, resize_bilinear
from .ranking import Ranker, summarize, topk_cosine
from .search import (IMAGE_EXTENSIONS, GallerySearcher, QueryTruncatedWarning,
                     SearchHit, SkippedImagesWarning, UnmatchedLabelsWarning,
                     check_queries, check_topk, format_results, scan_images)

__all__ = [
    'OrtSearcher', 'GallerySearcher', 'SearchHit', 'GalleryIndex',
    'IndexFormatError', 'IndexMismatchError', 'StaleIndexError',
    'ExportFormatError', 'load_manifest', 'load_labels', 'ImagePreprocessor',
    'TextTokenizer', 'resize_bilinear', 'IMAGE_EXTENSIONS', 'scan_images',
    'check_queries', 'check_topk', 'format_results', 'label_from_text',
    'topk_cosine', 'summarize', 'Ranker',
    'QueryTruncatedWarning', 'SkippedImagesWarning', 'UnmatchedLabelsWarning'
]

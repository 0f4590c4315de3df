"""Text-to-image person search over any image folder: API, index, picture.

The search concepts shared with the torch-free path (hits, folder scan,
warnings, labels, index, ranking) are defined once in :mod:`mdrl_deploy` and
re-exported here.
"""
from .index import (GalleryIndex, IndexFormatError, IndexMismatchError,
                    StaleIndexError)
from .labels import load_labels
from .ranking import (FaissRanker, TorchRanker, build_ranker, topk_cosine,
                      torch_topk_cosine)
from .searcher import (IMAGE_EXTENSIONS, PersonSearcher, QueryTruncatedWarning,
                       SearchHit, SkippedImagesWarning, UnmatchedLabelsWarning,
                       scan_images)
from .visualize import draw_search_results

__all__ = [
    'PersonSearcher', 'SearchHit', 'GalleryIndex', 'IndexFormatError',
    'IndexMismatchError', 'StaleIndexError', 'load_labels', 'topk_cosine',
    'torch_topk_cosine', 'TorchRanker', 'FaissRanker', 'build_ranker',
    'scan_images', 'IMAGE_EXTENSIONS', 'SkippedImagesWarning',
    'QueryTruncatedWarning', 'UnmatchedLabelsWarning', 'draw_search_results'
]

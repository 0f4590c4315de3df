"""Text-to-image person search over any image folder: API, index, picture."""
from .index import (GalleryIndex, IndexFormatError, IndexMismatchError,
                    StaleIndexError)
from .labels import load_labels
from .ranking import FaissRanker, TorchRanker, build_ranker, topk_cosine
from .searcher import (IMAGE_EXTENSIONS, PersonSearcher, QueryTruncatedWarning,
                       SearchHit, SkippedImagesWarning, UnmatchedLabelsWarning,
                       scan_images)
from .visualize import draw_search_results

__all__ = [
    'PersonSearcher', 'SearchHit', 'GalleryIndex', 'IndexFormatError',
    'IndexMismatchError', 'StaleIndexError', 'load_labels', 'topk_cosine',
    'TorchRanker', 'FaissRanker', 'build_ranker', 'scan_images',
    'IMAGE_EXTENSIONS', 'SkippedImagesWarning', 'QueryTruncatedWarning',
    'UnmatchedLabelsWarning', 'draw_search_results'
]

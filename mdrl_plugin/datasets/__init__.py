"""PEDES datasets, transforms and samplers (registered on import)."""
from .annotation import (
    AnnotationProblem,
    PedesImage,
    PedesRecord,
    find_annotation_file,
    group_images,
    load_annotation_json,
    normalize_image_path,
    parse_pedes_records,
)
from .base_pedes import BasePedesDataset
from .cuhk_pedes import CUHKPEDES
from .errors import (
    AnnotationFormatError,
    AnnotationNotFoundError,
    DatasetNotFoundError,
    EmptySplitError,
    MissingImagesError,
    UnreadableImageError,
)
from .icfg_pedes import ICFGPEDES
from .rstpreid import RSTPReid
from .samplers import IdentityBalancedSampler
from .transforms import LoadPersonImage, PackTextImageInputs

__all__ = [
    'BasePedesDataset', 'CUHKPEDES', 'ICFGPEDES', 'RSTPReid',
    'LoadPersonImage', 'PackTextImageInputs', 'IdentityBalancedSampler',
    'DatasetNotFoundError', 'AnnotationNotFoundError', 'AnnotationFormatError',
    'MissingImagesError', 'EmptySplitError', 'UnreadableImageError',
    'PedesRecord', 'PedesImage', 'AnnotationProblem', 'find_annotation_file',
    'load_annotation_json', 'normalize_image_path', 'parse_pedes_records',
    'group_images'
]

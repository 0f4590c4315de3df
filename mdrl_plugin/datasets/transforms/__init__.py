"""Data transforms: an image loader that names bad files, the packer, and the
training augmentations (random crop with padding, random erasing)."""
from .augment import RandomCropPad, RandomErasing
from .formatting import PackTextImageInputs
from .loading import LoadPersonImage

__all__ = [
    'LoadPersonImage', 'PackTextImageInputs', 'RandomCropPad', 'RandomErasing'
]

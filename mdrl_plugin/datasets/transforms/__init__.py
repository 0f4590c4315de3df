"""Data transforms: an image loader that names bad files, and the packer."""
from .formatting import PackTextImageInputs
from .loading import LoadPersonImage

__all__ = ['LoadPersonImage', 'PackTextImageInputs']

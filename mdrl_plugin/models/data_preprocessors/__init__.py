from .text_image import TextImageDataPreprocessor

__all__ = ['TextImageDataPreprocessor']

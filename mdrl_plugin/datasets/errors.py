"""Exceptions of the PEDES datasets and the image loader; each derives from
:class:`ValueError` or :class:`FileNotFoundError`."""

__all__ = [
    'DatasetNotFoundError', 'AnnotationNotFoundError', 'AnnotationFormatError',
    'MissingImagesError', 'EmptySplitError', 'UnreadableImageError'
]


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's ``data_root`` does not exist or is not a folder."""


class AnnotationNotFoundError(FileNotFoundError):
    """No annotation JSON was found (the message lists the names tried)."""


class AnnotationFormatError(ValueError):
    """The annotation file is not valid JSON or a record is malformed."""


class MissingImagesError(FileNotFoundError):
    """Image files listed in the annotation file do not exist."""


class EmptySplitError(ValueError):
    """The requested split has no records in the annotation file."""


class UnreadableImageError(ValueError):
    """An image file exists but cannot be decoded (empty, corrupt)."""

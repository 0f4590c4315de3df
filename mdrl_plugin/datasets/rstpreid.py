"""RSTPReid (Zhu et al., ACM MM 2021)."""
from mdrl_plugin.registry import DATASETS

from .base_pedes import BasePedesDataset

__all__ = ['RSTPReid']


@DATASETS.register_module()
class RSTPReid(BasePedesDataset):
    """RSTPReid: 20,505 images, 4,101 identities, two captions per image.

    Layout: ``<data_root>/imgs/<img_path>`` and ``data_captions.json`` holding
    records ``{"id", "img_path", "captions", "split"}`` with splits ``train``
    (3,701 ids), ``val`` (200) and ``test`` (200).

    Args: see :class:`BasePedesDataset`; ``data_root`` is the ``RSTPReid``
    folder itself.
    """

    METAINFO = dict(dataset_name='RSTPReid')
    DEFAULT_ANN_FILES = ('data_captions.json', )
    ALLOWED_SPLITS = ('train', 'val', 'test')

"""CUHK-PEDES (Li et al., CVPR 2017)."""
from mdrl_plugin.registry import DATASETS

from .base_pedes import BasePedesDataset

__all__ = ['CUHKPEDES']


@DATASETS.register_module()
class CUHKPEDES(BasePedesDataset):
    """CUHK-PEDES: 40,206 images, 13,003 identities, 80,412 captions.

    Layout: ``<data_root>/imgs/<file_path>`` and one of ``reid_raw.json``,
    ``caption_all.json`` or ``CUHK-PEDES.json`` (tried in this order) holding
    records ``{"split", "captions", "file_path", "processed_tokens", "id"}``
    with splits ``train`` (11,003 ids), ``val`` (1,000) and ``test`` (1,000).

    Args: see :class:`BasePedesDataset`; ``data_root`` is the
    ``CUHK-PEDES`` folder itself.
    """

    METAINFO = dict(dataset_name='CUHK-PEDES')
    DEFAULT_ANN_FILES = ('reid_raw.json', 'caption_all.json',
                         'CUHK-PEDES.json')
    ALLOWED_SPLITS = ('train', 'val', 'test')

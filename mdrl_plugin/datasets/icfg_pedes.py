"""ICFG-PEDES (Ding et al., 2021)."""
from mdrl_plugin.registry import DATASETS
from .base_pedes import BasePedesDataset

__all__ = ['ICFGPEDES']


@DATASETS.register_module()
class ICFGPEDES(BasePedesDataset):
    """ICFG-PEDES: 54,522 images, 4,102 identities, one caption per image.

    Layout: ``<data_root>/imgs/<file_path>`` and ``ICFG-PEDES.json`` (or
    ``ICFG_PEDES.json``) with the CUHK-PEDES record fields. The release has
    only the splits ``train`` (3,102 ids) and ``test`` (1,000 ids): asking
    for ``split='val'`` raises a ``ValueError`` (evaluate on ``test``), and a
    record with split ``val`` is reported as malformed.

    Args: see :class:`BasePedesDataset`; ``data_root`` is the
    ``ICFG-PEDES`` folder itself.
    """

    METAINFO = dict(dataset_name='ICFG-PEDES')
    DEFAULT_ANN_FILES = ('ICFG-PEDES.json', 'ICFG_PEDES.json')
    ALLOWED_SPLITS = ('train', 'test')

    @classmethod
    def _check_split(cls, split: str, name: str) -> None:
        if split == 'val':
            raise ValueError(
                f"{name} has no 'val' split (the release ships only 'train' "
                f"and 'test'); use split='test' for evaluation.")
        super()._check_split(split, name)

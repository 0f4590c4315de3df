"""ICFG-PEDES (Ding et al., 2021)."""
import hashlib
from typing import Iterable, List, Optional

from mdrl_plugin.registry import DATASETS

from .annotation import PedesRecord
from .base_pedes import BasePedesDataset

__all__ = ['ICFGPEDES']


@DATASETS.register_module()
class ICFGPEDES(BasePedesDataset):
    """ICFG-PEDES: 54,522 images, 4,102 identities, one caption per image.

    Layout: ``<data_root>/imgs/<file_path>`` and ``ICFG-PEDES.json`` (or
    ``ICFG_PEDES.json``) with the CUHK-PEDES record fields; the release has
    only ``train`` (3,102 ids) and ``test`` (1,000 ids) records.

    ``val_from_train=dict(num_ids=K, seed=S)`` holds K training identities
    out of ``split='train'`` (the rest relabelled ``0..C-1``) and serves
    their images as ``split='val'`` evaluation entries; the train and val
    datasets of a config must get the same value. Without it ``split='val'``
    raises (the papers validate on ``'test'``). See docs/datasets.md.

    Args:
        data_root: The ``ICFG-PEDES`` folder itself.
        split: ``'train'``, ``'test'``, or ``'val'`` (needs
            ``val_from_train``).
        val_from_train: ``dict(num_ids=int, seed=int)`` (``seed`` defaults to
            0), or None for the release's splits. Ignored for
            ``split='test'``.
        **kwargs: See :class:`BasePedesDataset`.

    Raises:
        ValueError: ``split='val'`` without ``val_from_train``, a malformed
            ``val_from_train``, or ``num_ids`` not smaller than the number of
            training identities.
    """

    METAINFO = dict(dataset_name='ICFG-PEDES')
    DEFAULT_ANN_FILES = ('ICFG-PEDES.json', 'ICFG_PEDES.json')
    #: Split values a record may carry (the release's).
    ALLOWED_SPLITS = ('train', 'test')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 val_from_train: Optional[dict] = None,
                 **kwargs) -> None:
        name = self._dataset_name(kwargs.get('metainfo'))
        self.val_from_train = self._check_val_from_train(val_from_train,
                                                         name)
        if split == 'val' and self.val_from_train is None:
            raise ValueError(
                f"{name} has no 'val' split (the release ships only 'train' "
                f"and 'test'); use split='test' for evaluation, or hold out "
                f'training identities as val with '
                f'val_from_train=dict(num_ids=..., seed=...).')
        super().__init__(data_root=data_root, split=split, **kwargs)
        self._metainfo.update(val_from_train=self.val_from_train)

    @staticmethod
    def _check_val_from_train(cfg: Optional[dict],
                              name: str) -> Optional[dict]:
        if cfg is None:
            return None
        if not isinstance(cfg, dict) or set(cfg) - {'num_ids', 'seed'} or \
                'num_ids' not in cfg:
            raise ValueError(
                f'{name}: val_from_train must be dict(num_ids=int, seed=int) '
                f'or None, got {cfg!r}.')
        num_ids, seed = cfg['num_ids'], cfg.get('seed', 0)
        if isinstance(num_ids, bool) or not isinstance(num_ids, int) or \
                num_ids < 1:
            raise ValueError(
                f'{name}: val_from_train.num_ids must be an integer >= 1, '
                f'got {num_ids!r}.')
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(
                f'{name}: val_from_train.seed must be an integer, got '
                f'{seed!r}.')
        return dict(num_ids=num_ids, seed=seed)

    @classmethod
    def _check_split(cls, split: str, name: str) -> None:
        if split != 'val':  # 'val' is checked in __init__
            super()._check_split(split, name)

    @staticmethod
    def select_val_ids(train_ids: Iterable[int], num_ids: int,
                       seed: int = 0) -> List[int]:
        """The training identities held out as val: the ``num_ids`` of
        ``train_ids`` with the smallest SHA-1 digest of ``f'{seed}:{id}'``,
        sorted (independent of order, platform and library versions)."""
        def key(pid: int) -> bytes:
            return hashlib.sha1(f'{seed}:{pid}'.encode()).digest()

        return sorted(sorted(set(train_ids), key=key)[:num_ids])

    def _select_records(self,
                        records: List[PedesRecord]) -> List[PedesRecord]:
        """The split's records, with ``val_from_train`` applied."""
        if self.val_from_train is None or self.split == 'test':
            return super()._select_records(records)
        train = [r for r in records if r.split == 'train']
        train_ids = {r.pid for r in train}
        num_ids = self.val_from_train['num_ids']
        if num_ids >= len(train_ids):
            raise ValueError(
                f'{self.dataset_name}: val_from_train.num_ids={num_ids} '
                f'must be smaller than the {len(train_ids)} training '
                f'identities of {self.ann_file}.')
        held_out = set(self.select_val_ids(train_ids, num_ids,
                                           self.val_from_train['seed']))
        want_val = self.split == 'val'
        return [r for r in train if (r.pid in held_out) == want_val]

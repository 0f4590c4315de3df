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
    ``ICFG_PEDES.json``) with the CUHK-PEDES record fields. The release has
    only the splits ``train`` (3,102 ids) and ``test`` (1,000 ids); a record
    with split ``val`` is reported as malformed.

    A validation split is made by holding out training identities:
    ``val_from_train=dict(num_ids=K, seed=S)`` removes K training identities
    from ``split='train'`` (the remaining ones are relabelled ``0..C-1``,
    ``C = 3,102 - K`` on the full release) and ``split='val'`` serves exactly
    their images as evaluation entries. The held-out identities are the K
    training ids with the smallest SHA-1 digest of ``f'{S}:{id}'``
    (:meth:`select_val_ids`): a seeded draw that does not depend on the
    record order, the Python or numpy version or the platform. The train and
    the val dataset of one config must be given the same ``val_from_train``.

    Without ``val_from_train`` (the default) the release's splits are used as
    they are and ``split='val'`` raises a ``ValueError``: the papers'
    protocol validates on ``split='test'``.

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
        """The training identities held out as val.

        Args:
            train_ids: Raw ids of the training split (duplicates allowed).
            num_ids: How many to hold out.
            seed: Seed of the draw.

        Returns:
            The ``num_ids`` ids with the smallest SHA-1 digest of
            ``f'{seed}:{id}'``, sorted.
        """
        def key(pid: int) -> bytes:
            return hashlib.sha1(f'{seed}:{pid}'.encode()).digest()

        return sorted(sorted(set(train_ids), key=key)[:num_ids])

    def _select_records(self,
                        records: List[PedesRecord]) -> List[PedesRecord]:
        """The split's records, with ``val_from_train`` applied.

        Args:
            records: All valid records of the annotation file.

        Returns:
            ``train`` minus the held-out ids, ``val`` = the held-out ids'
            training records, or ``test``.
        """
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

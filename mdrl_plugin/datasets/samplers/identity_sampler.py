"""PK sampling: batches of P identities with K samples each."""
import math
from typing import Dict, Iterator, List, Optional, Sized, Tuple

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mdrl_plugin.registry import DATA_SAMPLERS

__all__ = ['IdentityBalancedSampler']


def _read_labels(dataset: Sized) -> np.ndarray:
    """Identity label of every entry, without running the pipeline."""
    name = type(dataset).__name__
    getter = getattr(dataset, 'get_gt_labels', None)
    if callable(getter):
        try:
            return np.asarray(getter(), dtype=np.int64).reshape(-1)
        except ValueError as e:
            raise ValueError(f'IdentityBalancedSampler: {e}') from None
    if not hasattr(dataset, 'get_data_info'):
        raise TypeError(
            f'IdentityBalancedSampler needs a dataset with get_gt_labels() '
            f'or get_data_info(i) (an mmengine BaseDataset); got {name}.')
    labels = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if 'gt_label' not in info:
            raise ValueError(
                f'IdentityBalancedSampler reads \'gt_label\' from the dataset '
                f'entries, but entry {i} of {name} has none (keys: '
                f'{sorted(info)}); use training entries (test_mode=False).')
        labels[i] = int(info['gt_label'])
    return labels


@DATA_SAMPLERS.register_module()
class IdentityBalancedSampler(Sampler):
    """Identity-balanced ("PK") sampler for person re-identification.

    Every batch of ``batch_size`` indices holds ``P = batch_size //
    num_instances`` distinct identities with ``K = num_instances`` entries
    each, consecutive. Identities come from the entries' ``gt_label`` (read
    once, without the pipeline).

    One epoch (docs/datasets.md has the details): each identity's shuffled
    entries are cut into chunks of K, repeated to fill a chunk when short;
    the ``n % K`` leftover entries follow ``leftover``. Identities are dealt
    round-robin to the ranks (disjoint per epoch), each identity's chunks
    are spread evenly over the epoch, and batches are filled greedily with
    distinct identities. Every rank yields ``ceil(total_chunks / (world_size
    * P))`` batches, topped up with fresh chunks of its identities when
    short. The plan depends only on ``seed + epoch`` (:meth:`set_epoch`);
    ``shuffle=False`` fixes it (identities in label order).

    Args:
        dataset: Dataset with training entries (``gt_label``); an
            mmengine ``BaseDataset`` or anything with ``get_gt_labels()``.
        batch_size: Per-rank batch size; must equal the dataloader's and be
            a multiple of ``num_instances``.
        num_instances: K, entries per identity in a batch.
        leftover: ``'spread'``: ``floor(n / K)`` chunks plus one more with
            probability ``frac(n / K)`` (their total fixed per epoch: about
            one pass over the data); ``'pad'``: ``ceil(n / K)`` chunks;
            ``'drop'``: ``floor(n / K)`` chunks.
        shuffle: Randomise the plan every epoch.
        seed: Random seed, identical on all ranks; None draws one with
            ``mmengine.dist.sync_random_seed()``.
        rank: Override of this process's rank (tests); None asks
            ``mmengine.dist.get_dist_info()``.
        world_size: Override of the number of ranks, with ``rank``.

    Raises:
        ValueError: Bad sizes, a dataset without labels, or fewer than
            ``world_size * P`` identities.
    """

    #: Accepted values of ``leftover``.
    LEFTOVER_MODES = ('spread', 'pad', 'drop')

    def __init__(self,
                 dataset: Sized,
                 batch_size: int,
                 num_instances: int = 4,
                 leftover: str = 'spread',
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        if not isinstance(num_instances, int) or num_instances < 1:
            raise ValueError(
                f'IdentityBalancedSampler: num_instances must be a positive '
                f'int, got {num_instances!r}.')
        if not isinstance(batch_size, int) or batch_size < num_instances \
                or batch_size % num_instances:
            raise ValueError(
                f'IdentityBalancedSampler: batch_size ({batch_size!r}) must '
                f'be a positive multiple of num_instances ({num_instances}).')
        if leftover not in self.LEFTOVER_MODES:
            raise ValueError(
                f'IdentityBalancedSampler: leftover must be one of '
                f'{self.LEFTOVER_MODES}, got {leftover!r}.')
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(
                f'IdentityBalancedSampler: rank {self.rank} is outside '
                f'world_size {self.world_size}.')
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.leftover = leftover
        self.num_ids_per_batch = batch_size // num_instances
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

        labels = _read_labels(dataset)
        if labels.size == 0:
            raise ValueError('IdentityBalancedSampler: the dataset is empty.')
        self.labels = labels
        order = np.argsort(labels, kind='stable')
        uniq, starts = np.unique(labels[order], return_index=True)
        self._groups: List[np.ndarray] = np.split(order, starts[1:])
        self.num_identities = len(uniq)
        need = self.world_size * self.num_ids_per_batch
        if self.num_identities < need:
            raise ValueError(
                f'IdentityBalancedSampler: {self.num_identities} identities '
                f'cannot fill batches of {self.num_ids_per_batch} distinct '
                f'identities on {self.world_size} rank(s) (need at least '
                f'{need}); lower batch_size or raise num_instances.')
        sizes = np.array([len(g) for g in self._groups])
        self._base_chunks, self._frac = self._chunk_counts(
            sizes, num_instances, leftover)
        self._num_extra = int(np.floor(self._frac.sum() + 1e-9))
        self.num_chunks = int(self._base_chunks.sum()) + self._num_extra
        self.num_batches = math.ceil(
            self.num_chunks / (self.world_size * self.num_ids_per_batch))

    @staticmethod
    def _chunk_counts(sizes: np.ndarray, k: int,
                      leftover: str) -> Tuple[np.ndarray, np.ndarray]:
        """``(base, frac)``: every identity of ``sizes`` entries gets
        ``base`` chunks of ``k`` (at least one) and, for ``'spread'``, one
        more with probability ``frac`` (else zero)."""
        base = np.maximum(sizes // k, 1)
        frac = np.zeros(len(sizes))
        rest = sizes % k
        if leftover == 'pad':
            base = base + ((sizes > k) & (rest > 0))
        elif leftover == 'spread':
            frac = np.where(sizes > k, rest / k, 0.0)
        return base, frac

    def _epoch_chunk_counts(self, rng: np.random.Generator) -> np.ndarray:
        """Chunks per identity this epoch (identical on every rank)."""
        counts = self._base_chunks.copy()
        m = self._num_extra
        if m == 0:
            return counts
        weights = self._frac * (m / self._frac.sum())  # each < 1, sum m
        if self.shuffle:
            order = rng.permutation(len(weights))
            u = rng.random()
        else:
            order = np.argsort(-weights, kind='stable')
            u = 0.5
        cum = np.cumsum(weights[order])
        picks = np.searchsorted(cum, u + np.arange(m), side='right')
        counts[order[np.minimum(picks, len(order) - 1)]] += 1
        return counts

    def __len__(self) -> int:
        """Indices yielded per epoch on this rank."""
        return self.num_batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the plan is a function of ``seed + epoch``."""
        self.epoch = epoch

    def _chunks_of(self, ident: int, c: int,
                   rng: np.random.Generator) -> np.ndarray:
        """``c x K`` entries of one identity: its shuffled entries truncated
        or repeated cyclically (distinct within a chunk when it has K)."""
        idx = self._groups[ident]
        if self.shuffle:
            idx = idx[rng.permutation(len(idx))]
        return np.resize(idx, c * self.num_instances).reshape(
            c, self.num_instances)

    def _plan(self) -> List[List[np.ndarray]]:
        """The batches (lists of P chunks) of this rank for this epoch."""
        rng = np.random.default_rng(self.seed + self.epoch)
        n_ids = self.num_identities
        p = self.num_ids_per_batch
        counts = self._epoch_chunk_counts(rng)
        # 1) identities dealt to ranks (same on every rank)
        ident_order = rng.permutation(n_ids) if self.shuffle else \
            np.arange(n_ids)
        mine = np.sort(ident_order[self.rank::self.world_size])
        # A rank-specific stream, so ranks do not repeat each other's draws.
        rng = np.random.default_rng([self.seed + self.epoch, self.rank])
        # 2) chunks spread over the epoch: key (j + u) / c
        chunks, owners, keys = [], [], []
        for ident in mine:
            ch = self._chunks_of(int(ident), int(counts[ident]), rng)
            c = len(ch)
            off = rng.random(c) if self.shuffle else np.full(c, 0.5)
            chunks.extend(ch)
            owners.extend([int(ident)] * c)
            keys.append((np.arange(c) + off) / c)
        order = np.argsort(np.concatenate(keys), kind='stable')
        # 3) greedy filling with distinct identities per batch
        batches: List[List[np.ndarray]] = []
        cur: List[np.ndarray] = []
        cur_ids: Dict[int, None] = {}
        waiting: List[int] = []

        def take_waiting() -> List[int]:
            """Move waiting chunks into ``cur``; return those still waiting."""
            still = []
            for w in waiting:
                if owners[w] in cur_ids or len(cur) == p:
                    still.append(w)
                else:
                    cur.append(chunks[w])
                    cur_ids[owners[w]] = None
            return still

        for pos in order:
            if owners[pos] in cur_ids:
                waiting.append(pos)
                continue
            cur.append(chunks[pos])
            cur_ids[owners[pos]] = None
            if len(cur) == p:
                batches.append(cur)
                cur, cur_ids = [], {}
                waiting = take_waiting()
        # leftovers: the last partial batch, then waiting chunks
        while (cur or waiting) and len(batches) < self.num_batches:
            waiting = take_waiting()
            batches.append(self._top_up(cur, cur_ids, mine, rng))
            cur, cur_ids = [], {}
        # 4) exactly num_batches
        while len(batches) < self.num_batches:
            batches.append(self._top_up([], {}, mine, rng))
        return batches[:self.num_batches]

    def _top_up(self, cur: List[np.ndarray], cur_ids: Dict[int, None],
                mine: np.ndarray, rng: np.random.Generator
                ) -> List[np.ndarray]:
        """Complete a batch with fresh chunks of other identities."""
        need = self.num_ids_per_batch - len(cur)
        if need <= 0:
            return cur
        free = np.array([i for i in mine if int(i) not in cur_ids])
        if self.shuffle:
            picked = rng.choice(free, size=need, replace=False)
        else:
            picked = free[:need]
        return cur + [self._chunks_of(int(i), 1, rng)[0] for i in picked]

    def __iter__(self) -> Iterator[int]:
        """Yield this rank's indices, batch after batch."""
        for batch in self._plan():
            for chunk in batch:
                yield from (int(i) for i in chunk)

"""Worker run in spawned processes by ``test_person_retrieval_metric.py``.

Kept in its own module (not a test file) so ``torch.multiprocessing.spawn``
can import it in the children.
"""
import torch
import torch.distributed as dist


class ListDataset:
    """The smallest dataset a :class:`DefaultSampler` accepts."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def run_worker(rank: int, world_size: int, init_file: str, out_dir: str,
               samples: list, batch_size: int) -> None:
    """Evaluate ``samples`` sharded by a DefaultSampler; save what rank saw."""
    torch.set_num_threads(1)
    from mmengine.dataset import DefaultSampler

    from mdrl_plugin.registry import METRICS

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    try:
        dataset = ListDataset(samples)
        indices = list(DefaultSampler(dataset, shuffle=False))
        metric = METRICS.build(
            dict(type='PersonRetrievalMetric', topk=(1, 2),
                 collect_dir=f'{out_dir}/collect'))
        for start in range(0, len(indices), batch_size):
            batch = [dataset[i] for i in indices[start:start + batch_size]]
            metric.process(None, batch)
        metrics = metric.evaluate(len(dataset))
        torch.save(dict(indices=indices, metrics=metrics),
                   f'{out_dir}/rank{rank}.pt')
    finally:
        dist.destroy_process_group()

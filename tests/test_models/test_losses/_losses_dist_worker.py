"""Worker run in spawned processes by ``test_cross_rank_matching.py``.

Kept in its own module (not a test file) so ``torch.multiprocessing.spawn``
can import it in the children.
"""
import gc
import os

import torch
import torch.distributed as dist
from torch import nn


class TwoTowers(nn.Module):
    """Two linear projections standing in for the image and text encoders."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.image = nn.Linear(in_dim, out_dim)
        self.text = nn.Linear(in_dim, out_dim)

    def forward(self, images: torch.Tensor, texts: torch.Tensor) -> tuple:
        return self.image(images), self.text(texts)


def _split(tensor: torch.Tensor, sizes: list, rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return tensor[start:start + sizes[rank]]


def run_worker(rank: int, world_size: int, init_file: str, out_dir: str,
               cases: list, ddp_case: dict) -> None:
    """Run every case on this rank and save the results to ``out_dir``."""
    torch.set_num_threads(1)
    from mdrl_plugin.models.losses import all_gather_with_grad
    from mdrl_plugin.registry import MODELS

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank,
        world_size=world_size)
    results = {'cases': [], 'ddp': None, 'shape_error': None, 'gather': None}
    try:
        # Feature-level cases: loss value and gradients w.r.t. local rows.
        for case in cases:
            sizes = case['sizes']
            images = _split(case['images'], sizes, rank).clone()
            texts = _split(case['texts'], sizes, rank).clone()
            labels = _split(case['labels'], sizes, rank).clone()
            images.requires_grad_(True)
            texts.requires_grad_(True)
            loss_fn = MODELS.build(case['cfg'])
            loss = loss_fn(images, texts, labels)
            loss.backward()
            results['cases'].append(
                dict(loss=loss.detach(), image_grad=images.grad.clone(),
                     text_grad=texts.grad.clone()))

        # Parameter-level case: a DDP-wrapped model, gradients averaged by DDP.
        sizes = ddp_case['sizes']
        torch.manual_seed(0)
        model = TwoTowers(ddp_case['in_dim'], ddp_case['out_dim']).double()
        model.load_state_dict(ddp_case['state_dict'])
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=None)
        feats = ddp(
            _split(ddp_case['images'], sizes, rank),
            _split(ddp_case['texts'], sizes, rank))
        loss = MODELS.build(ddp_case['cfg'])(
            *feats, _split(ddp_case['labels'], sizes, rank))
        loss.backward()
        results['ddp'] = dict(
            loss=loss.detach(),
            grads={k: p.grad.clone()
                   for k, p in model.named_parameters()})

        # Gathered tensors and the local slice, unequal sizes.
        local = torch.arange(2 + rank, dtype=torch.float64)[:, None] + \
            10 * rank
        gathered = all_gather_with_grad(local, torch.full((2 + rank, ), rank))
        results['gather'] = dict(
            tensors=gathered.tensors, local_slice=gathered.local_slice,
            world_size=gathered.world_size)

        # Feature widths that differ between ranks: a clear error everywhere.
        loss_fn = MODELS.build(dict(type='CMPMLoss', gather_across_ranks=True))
        width = 4 + rank
        try:
            loss_fn(torch.randn(3, width), torch.randn(3, width),
                    torch.arange(3))
        except ValueError as err:
            results['shape_error'] = str(err)
    finally:
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
        # the DDP wrapper holds the group: free it first, or the group's
        # threads may outlive it into the interpreter's exit (SIGABRT)
        ddp = model = feats = loss = None
        gc.collect()
        dist.destroy_process_group()

"""Tiny MDRL set-up shared by ``test_with_cp.py`` and the worker it runs in
2 spawned gloo processes (kept out of the test file so that
``torch.multiprocessing.spawn`` can import it in the children)."""
import copy
import gc
import os

import torch
import torch.distributed as dist
import torch.utils.checkpoint
from mmengine.structures import BaseDataElement
from torch import nn

from mdrl_test_utils import tiny_mdrl_cfg

CAPTIONS = ['a man in red shirt', 'a woman in blue dress',
            'a man with green bag', 'a woman wearing yellow hat']


def model_cfg(bert_dir: str, with_cp: bool, dropout: float) -> dict:
    """The tests' tiny MDRL with two layers in every stack.

    Args:
        bert_dir: Tiny BERT folder.
        with_cp: ``with_cp`` of the ViT, the LTE, both DLLs and CIM.
        dropout: Dropout of every stack (and the ViT's drop path).

    Returns:
        A model config for ``MODELS.build``.
    """
    cfg = tiny_mdrl_cfg(bert_dir)
    cfg['image_encoder'].update(
        drop_path_rate=dropout, with_cp=with_cp,
        arch_kwargs=dict(embed_dim=32, depth=2, num_heads=2,
                         proj_drop_rate=dropout, attn_drop_rate=dropout))
    cfg['text_encoder'].update(num_lte_layers=2, dropout=dropout,
                               with_cp=with_cp)
    for key in ('image_local', 'cross_modal'):
        cfg[key].update(num_layers=2, dropout=dropout, with_cp=with_cp)
    return cfg


def train_batch(model: nn.Module, seed: int = 0) -> dict:
    """8 image-caption pairs of 4 identities, through the data preprocessor."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 255, (8, 3, 32, 16), generator=g,
                           dtype=torch.uint8)
    samples = [BaseDataElement(metainfo=dict(text=CAPTIONS[(i + seed) % 4],
                                             gt_label=(i + seed) % 4))
               for i in range(8)]
    return model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), True)


def loss_and_grads(model: nn.Module, data: dict, seed: int,
                   params: nn.Module = None) -> tuple:
    """One training forward and backward from RNG seed ``seed``.

    Args:
        model: The model (or its DDP wrapper).
        data: A batch from :func:`train_batch`.
        seed: Seed set right before the forward (shuffle, dropout).
        params: Where the gradients are read (default: ``model``).

    Returns:
        tuple: losses ``{name: tensor}`` and gradients ``{name: tensor}``.
    """
    params = model if params is None else params
    model.train()
    params.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    losses = model(**copy.deepcopy(data), mode='loss')
    sum(losses.values()).backward()
    return ({k: v.detach() for k, v in losses.items()},
            {n: p.grad.clone() for n, p in params.named_parameters()
             if p.grad is not None})


def run_worker(rank: int, world_size: int, init_file: str, out_dir: str,
               bert_dir: str) -> None:
    """DDP steps with and without with_cp on this rank; results to a file."""
    torch.set_num_threads(1)
    from mdrl_plugin.registry import MODELS

    calls = []
    real = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    torch.utils.checkpoint.checkpoint = counting
    dist.init_process_group('gloo', init_method=f'file://{init_file}',
                            rank=rank, world_size=world_size)
    results = dict(cp_calls=[])
    ddp = None
    try:
        for name, with_cp in (('plain', False), ('with_cp', True)):
            torch.manual_seed(0)  # the same weights on both ranks
            model = MODELS.build(model_cfg(bert_dir, with_cp, dropout=0.1))
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=None)
            data = train_batch(model, seed=rank)  # each rank its own pairs
            calls.clear()
            losses, grads = loss_and_grads(ddp, data, seed=7, params=model)
            results['cp_calls'].append(len(calls))
            results[name] = dict(losses=losses, grads=grads)
    finally:
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
        # the DDP wrapper holds the group: free it first, or the group's
        # threads may outlive it into the interpreter's exit (SIGABRT)
        ddp = model = None
        gc.collect()
        dist.destroy_process_group()

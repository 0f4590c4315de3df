"""Helpers of the matching losses: input checks and cross-rank gathering.

The cross-rank scheme of ``CMPMLoss`` and ``SDMLoss`` with
``gather_across_ranks=True``: each rank scores its own rows against the
gathered rows of all ranks and returns ``world_size * sum(own row losses) /
global_batch``; the gather's backward sums the gradients over the ranks. The
loss and gradients then equal one process's on the whole batch
(docs/losses.md, "Cross-rank matching").
"""
from typing import NamedTuple, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from torch import Tensor

__all__ = [
    'GatheredBatch', 'all_gather_with_grad', 'gather_features',
    'check_labels', 'check_matching_inputs', 'matching_kl'
]


class GatheredBatch(NamedTuple):
    """Result of :func:`all_gather_with_grad`.

    Attributes:
        tensors: The gathered tensors, rows of all ranks concatenated in rank
            order (the inputs themselves without distributed).
        local_slice: Rows of the gathered tensors that came from this rank.
        world_size: Number of ranks that took part (1 without distributed).
    """
    tensors: tuple
    local_slice: slice
    world_size: int


class _AllGatherRows(torch.autograd.Function):
    """All-gather rows of possibly different counts, with a summing backward.

    Forward pads every rank's tensor to the largest row count, all-gathers and
    trims. Backward all-reduces (sums) the gradient of the whole gathered
    tensor, so each rank receives the gradient that the losses of *all* ranks
    send to its rows, and returns its own slice.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, sizes: list, rank: int,
                group: Optional[object]) -> Tensor:
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[:ctx.rank])
        stop = start + ctx.sizes[ctx.rank]
        return grad[start:stop], None, None, None


def _gather_padded(tensor: Tensor, sizes: list,
                   group: Optional[object]) -> Tensor:
    """All-gather ``tensor`` whose row count on rank ``k`` is ``sizes[k]``."""
    rows = (0, max(sizes) - tensor.shape[0])  # F.pad lists dim 0 last
    padded = F.pad(tensor.contiguous(), (0, 0) * (tensor.dim() - 1) + rows)
    buffers = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(buffers, padded, group=group)
    return torch.cat([buf[:n] for buf, n in zip(buffers, sizes)], dim=0)


def all_gather_with_grad(*tensors: Tensor,
                         group: Optional[object] = None) -> GatheredBatch:
    """Gather the rows of tensors from all ranks; gradients reach every rank.

    Without distributed (or with one rank) the inputs come back unchanged.
    Otherwise rows are concatenated in rank order; ranks may hold different
    row counts, other dimensions must agree. Floating-point tensors that
    require grad stay differentiable. Every rank must call this with the same
    number of tensors and, when gradients flow, run backward.

    Args:
        *tensors: Tensors with rows first (e.g. features ``[B, D]``, labels
            ``[B]``), all with the same ``B`` on a rank.
        group: Process group; ``None`` for the default group.

    Returns:
        A :class:`GatheredBatch` with the gathered tensors, this rank's
        slice of them and the world size.

    Raises:
        ValueError: If no tensor is given, the row counts differ on a rank, or
            a non-row dimension differs between ranks.
    """
    if len(tensors) == 0:
        raise ValueError('gather_features: expected at least one tensor')
    rows = {int(t.shape[0]) if t.dim() > 0 else -1 for t in tensors}
    if len(rows) != 1 or -1 in rows:
        raise ValueError(
            'gather_features: all tensors must have the same number of rows '
            f'(dim 0), got shapes {[tuple(t.shape) for t in tensors]}')
    rank, world_size = get_dist_info(group)
    if world_size == 1:
        n = int(tensors[0].shape[0])
        return GatheredBatch(tuple(tensors), slice(0, n), 1)

    shapes = [None] * world_size  # shapes[rank][i]: tensor i on that rank
    dist.all_gather_object(shapes, [tuple(t.shape) for t in tensors],
                           group=group)
    for i, t in enumerate(tensors):
        trailing = {s[i][1:] for s in shapes}
        if len(trailing) != 1:
            per_rank = {k: s[i] for k, s in enumerate(shapes)}
            raise ValueError(
                f'gather_features: tensor {i} must have the same shape apart '
                f'from dim 0 on every rank, got {per_rank} (rank: shape)')
    sizes = [s[0][0] for s in shapes]
    if sum(sizes) == 0:
        raise ValueError('gather_features: every rank has an empty batch')

    gathered = []
    for t in tensors:
        if t.is_floating_point() and t.requires_grad:
            gathered.append(_AllGatherRows.apply(t, sizes, rank, group))
        else:
            gathered.append(_gather_padded(t.detach(), sizes, group))
    start = sum(sizes[:rank])
    return GatheredBatch(
        tuple(gathered), slice(start, start + sizes[rank]), world_size)


def gather_features(*tensors: Tensor,
                    group: Optional[object] = None) -> tuple:
    """Gather tensors from all ranks (a no-op without distributed).

    A thin wrapper of :func:`all_gather_with_grad` that returns only the
    gathered tensors.

    Args:
        *tensors: Tensors with rows first, same row count on a rank.
        group: Process group; ``None`` for the default group.

    Returns:
        The gathered tensors, in the order given.
    """
    return all_gather_with_grad(*tensors, group=group).tensors


def check_matching_inputs(name: str,
                          image_feats: Tensor,
                          text_feats: Tensor,
                          labels: Tensor,
                          allow_empty: bool = False) -> None:
    """Check the inputs of a cross-modal matching loss.

    Args:
        name: Loss name used in the messages.
        image_feats: Expected ``[B, D]`` floating point.
        text_feats: Expected ``[B, D]`` floating point.
        labels: Expected ``[B]`` integer identity labels.
        allow_empty: Accept ``B = 0`` (a rank with no samples, when the batch
            is gathered across ranks).

    Raises:
        ValueError: If a shape or dtype does not match what is expected.
    """
    for field, t in (('image_feats', image_feats), ('text_feats', text_feats)):
        if t.dim() != 2:
            raise ValueError(f'{name}: {field} must have shape [B, D], got '
                             f'{tuple(t.shape)}')
        if not t.is_floating_point():
            raise ValueError(
                f'{name}: {field} must be floating point, got {t.dtype}')
    if image_feats.shape != text_feats.shape:
        raise ValueError(
            f'{name}: image_feats and text_feats must have the same shape '
            f'[B, D], got {tuple(image_feats.shape)} and '
            f'{tuple(text_feats.shape)}')
    check_labels(name, labels, image_feats.shape[0], allow_empty)


def check_labels(name: str, labels: Tensor, batch: int,
                 allow_empty: bool = False) -> None:
    """Refuse identity labels that are not ``[batch]`` integers, and an
    empty batch unless ``allow_empty`` (``name`` starts the messages)."""
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f'{name}: labels must have shape [B] = [{batch}], '
                         f'got {tuple(labels.shape)}')
    if labels.is_floating_point() or labels.is_complex() or \
            labels.dtype == torch.bool:
        raise ValueError(f'{name}: labels must be integer identity labels, '
                         f'got {labels.dtype}')
    if batch == 0 and not allow_empty:
        raise ValueError(f'{name}: got an empty batch (B = 0)')


def matching_kl(logits: Tensor, row_labels: Tensor, col_labels: Tensor,
                eps: float) -> Tensor:
    """Per-row KL divergence between predicted and true matching distributions.

    With ``p = softmax(logits, dim=1)`` and ``q_ij = y_ij / sum_k y_ik``
    (``y_ij = 1`` when ``row_labels[i] == col_labels[j]``), returns
    ``sum_j p_ij * (log p_ij - log(q_ij + eps))`` for every row, with
    ``log p`` from ``log_softmax``.

    Args:
        logits: Similarities ``[R, N]`` of R queries to N keys.
        row_labels: Identity labels of the queries, ``[R]``.
        col_labels: Identity labels of the keys, ``[N]``.
        eps: Added to ``q`` inside the log (``q`` is 0 for non-matches).

    Returns:
        The per-row divergence, ``[R]``.

    Raises:
        ValueError: If a query's identity appears nowhere among the keys.
    """
    log_p = torch.log_softmax(logits, dim=1)
    y = (row_labels[:, None] == col_labels[None, :]).to(log_p.dtype)
    counts = y.sum(dim=1, keepdim=True)
    if bool((counts == 0).any()):
        raise ValueError(
            'matching_kl: a query identity has no matching key; the keys must '
            'include the pair of every query')
    q = y / counts
    return (log_p.exp() * (log_p - torch.log(q + eps))).sum(dim=1)

"""Toy model, dataset and metric: the engine tested without the real MDRL.

Loaded in configs with ``custom_imports=dict(imports=['toy_components'])`` (the
tests put ``tests/test_tools`` on ``PYTHONPATH``). Everything is tiny so that a
training run takes well under a second of compute.

* :class:`ToyDataset` - ``num_samples`` fixed 2x4 single-channel "images"
  with a label ``id % num_classes``; its pipeline may hold
  ``mmcv.RandomFlip`` (numpy randomness in the data pipeline).
* :class:`ToyModel` - two linear layers with a random permutation of the
  hidden units during training (torch randomness in the model), an optional
  frozen input layer, an optional NaN injected into the loss at a chosen
  iteration, and a record of the activation dtype (to observe autocast).
* :class:`ToyMetric` - reports the sample count and the sum of the sample ids
  (so a dropped or duplicated sample is visible), the accuracy and the sum of
  the scores (a float that changes with any weight change); optionally a
  score scripted per trained epoch (read from the model's step counter, so a
  checkpoint scores as at its epoch's validation).
"""
import time
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dataset import Compose
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch.utils.data import Dataset

from mdrl_plugin.registry import DATASETS, HOOKS, METRICS, MODELS, TRANSFORMS

__all__ = [
    'ToyDataset', 'ToyPack', 'ToyModel', 'ToyMetric', 'ToyStopHook',
    'ToyInterrupt'
]


@TRANSFORMS.register_module(force=True)
class ToyPack:
    """Pack ``img`` (H, W, 1) into a flat float tensor and a data sample."""

    def __call__(self, results: dict) -> dict:
        img = np.ascontiguousarray(results['img'], dtype=np.float32)
        return dict(
            inputs=torch.from_numpy(img.reshape(-1).copy()),
            data_samples=BaseDataElement(metainfo=dict(
                sample_id=results['sample_id'],
                gt_label=results['gt_label'])))


@DATASETS.register_module(force=True)
class ToyDataset(Dataset):
    """A fixed toy dataset of 2x4 one-channel images.

    Args:
        num_samples: Number of samples.
        num_classes: Number of classes; the label of sample ``i`` is
            ``i % num_classes``.
        pipeline: Transform configs applied to ``dict(img, sample_id,
            gt_label)``; should end with ``ToyPack``.
    """

    METAINFO = dict(classes=('a', 'b', 'c'))

    def __init__(self, num_samples: int = 12, num_classes: int = 3,
                 pipeline: Sequence[Union[dict, callable]] = (
                     dict(type='ToyPack'), )) -> None:
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.pipeline = Compose(list(pipeline))
        rng = np.random.RandomState(1234)
        self.images = rng.rand(num_samples, 2, 4, 1).astype(np.float32)

    @property
    def metainfo(self) -> dict:
        return dict(self.METAINFO)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> dict:
        results = dict(
            img=self.images[idx].copy(), sample_id=int(idx),
            gt_label=int(idx % self.num_classes))
        return self.pipeline(results)


@MODELS.register_module(force=True)
class ToyModel(BaseModel):
    """A two-layer classifier with a random op during training.

    Args:
        in_dim: Input size (8 for the 2x4 toy images).
        hidden: Hidden size.
        num_classes: Number of classes.
        shuffle_hidden: Randomly permute the hidden units in training
            (consumes the torch RNG every iteration).
        frozen_input_layer: Add a frozen ``in_dim x in_dim`` input layer.
        nan_at_iter: 1-based training iteration whose loss becomes NaN.
        step_delay: Seconds to sleep in every training step (lets a test
            kill a run in the middle); does not change any number.
        data_preprocessor: Data preprocessor config.
    """

    def __init__(self, in_dim: int = 8, hidden: int = 16, num_classes: int = 3,
                 shuffle_hidden: bool = True, frozen_input_layer: bool = False,
                 nan_at_iter: Optional[int] = None,
                 step_delay: float = 0.0,
                 data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.frozen = None
        if frozen_input_layer:
            self.frozen = nn.Linear(in_dim, in_dim)
            self.frozen.requires_grad_(False)
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.shuffle_hidden = shuffle_hidden
        self.nan_at_iter = nan_at_iter
        self.step_delay = step_delay
        self.register_buffer('num_train_steps',
                             torch.zeros((), dtype=torch.long))
        # fixed initial weights, without touching the global RNG
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in self.parameters():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
        #: dtype of the hidden activation of the last forward pass
        self.last_activation_dtype: Optional[torch.dtype] = None

    def forward(self, inputs: Union[torch.Tensor, List[torch.Tensor]],
                data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor'):
        x = torch.stack(inputs) if isinstance(inputs,
                                              (list, tuple)) else inputs
        if self.frozen is not None:
            x = self.frozen(x)
        h = self.fc1(x)
        self.last_activation_dtype = h.dtype
        if self.training and self.shuffle_hidden:
            h = h[:, torch.randperm(h.shape[1])]
        logits = self.fc2(F.relu(h))
        if mode == 'tensor':
            return logits
        labels = torch.tensor([d.gt_label for d in data_samples],
                              device=logits.device)
        if mode == 'loss':
            if self.step_delay:
                time.sleep(self.step_delay)
            self.num_train_steps += 1
            loss = F.cross_entropy(logits.float(), labels)
            if (self.nan_at_iter is not None
                    and int(self.num_train_steps) == self.nan_at_iter):
                loss = loss * float('nan')
            return dict(
                loss_cls=loss,
                act_is_bf16=torch.tensor(float(h.dtype == torch.bfloat16)),
                act_is_fp16=torch.tensor(float(h.dtype == torch.float16)))
        if mode == 'predict':
            logits = logits.float()
            return [
                dict(sample_id=d.sample_id, gt_label=d.gt_label,
                     pred=int(row.argmax()), score=float(row.max()),
                     train_steps=int(self.num_train_steps))
                for d, row in zip(data_samples, logits)
            ]
        raise ValueError(f'unknown mode {mode!r}')


@METRICS.register_module(force=True)
class ToyMetric(BaseMetric):
    """Count, id sum, accuracy and score sum of the evaluated samples.

    Args:
        script: ``script[e]`` is reported as ``scripted`` for a model trained
            ``e`` epochs (by its ``num_train_steps``); None: not reported.
        steps_per_epoch: Training steps of one epoch.
        **kwargs: ``BaseMetric``'s.
    """

    default_prefix = 'toy'

    def __init__(self, script: Optional[Sequence[float]] = None,
                 steps_per_epoch: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.script, self.steps_per_epoch = script, steps_per_epoch

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(
                dict(sample_id=sample['sample_id'],
                     correct=float(sample['pred'] == sample['gt_label']),
                     score=sample['score'], train_steps=sample['train_steps']))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = dict(
            count=len(results),
            id_sum=int(sum(r['sample_id'] for r in results)),
            accuracy=100.0 * sum(r['correct'] for r in results) / len(results),
            score_sum=float(sum(r['score'] for r in results)))
        if self.script is not None:
            epoch, rest = divmod(results[0]['train_steps'],
                                 self.steps_per_epoch)
            assert rest == 0, 'scripted scores need whole epochs'
            metrics['scripted'] = float(self.script[epoch])
        return metrics


class ToyInterrupt(Exception):
    """Raised by :class:`ToyStopHook` to simulate a run that dies."""


@HOOKS.register_module(force=True)
class ToyStopHook(Hook):
    """Raise :class:`ToyInterrupt` after training iteration ``at_iter``.

    Priority ``'LOWEST'``: the checkpoint of that iteration (if due) is saved
    first, like a kill that lands just after a save.

    Args:
        at_iter: 1-based iteration after which the run dies.
    """

    priority = 'LOWEST'

    def __init__(self, at_iter: int) -> None:
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if runner.iter + 1 == self.at_iter:
            raise ToyInterrupt(f'stopped after iteration {self.at_iter}')

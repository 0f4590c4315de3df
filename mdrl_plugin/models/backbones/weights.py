"""Loading local pretrained weights with timm's loader (never from the internet)."""
import os
from typing import Callable, Optional

import torch.nn as nn
from mmengine.logging import MMLogger
from timm.models import load_checkpoint

__all__ = ['check_checkpoint_file', 'load_timm_checkpoint']


def check_checkpoint_file(path: str, what: str = 'weights') -> str:
    """Raise a helpful error when a local checkpoint file does not exist.

    Args:
        path: File path.
        what: Words for the error message, e.g. ``'ViT pretrained weights'``.

    Returns:
        ``path``.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{what}: file {path!r} does not exist. Put the checkpoint file '
            'there (a .pth/.bin/.safetensors state dict) or change the path in '
            'the config.')
    return path


def load_timm_checkpoint(model: nn.Module,
                         path: str,
                         what: str = 'weights',
                         filter_fn: Optional[Callable] = None) -> None:
    """Load a local state dict into a timm model with ``timm.models.load_checkpoint``.

    timm reads ``.pth``/``.bin`` files with ``torch.load(weights_only=True)``
    (no arbitrary unpickling) and ``.safetensors`` files with safetensors,
    unwraps a ``state_dict``/``model`` entry and removes a ``module.`` prefix.
    Loading is non-strict (e.g. a classifier head the encoder lacks is
    ignored); missing and unexpected keys are logged.

    Args:
        model: The timm model.
        path: Local checkpoint file.
        what: Words for messages, e.g. ``'ViT pretrained weights'``.
        filter_fn: timm's ``checkpoint_filter_fn(state_dict, model)`` of the
            model's family (e.g. resampling ViT position embeddings).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no key of the checkpoint matches the model.
    """
    check_checkpoint_file(path, what)
    missing, unexpected = load_checkpoint(
        model, path, use_ema=False, strict=False, filter_fn=filter_fn)
    MMLogger.get_current_instance().info(
        f'Loaded {what} from {path}; missing keys: {missing or "none"}; '
        f'unexpected keys: {unexpected or "none"}')
    # BatchNorm's num_batches_tracked is filled in silently when absent
    loaded = [key for key in model.state_dict() if key not in set(missing)
              and not key.endswith('num_batches_tracked')]
    if not loaded:
        raise ValueError(f'{what} {path!r}: no key matches the model; is this '
                         'a checkpoint of the same architecture?')

"""Mixed-precision optimizer wrapper that also works on CPU."""
import logging
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPERS

__all__ = ['MixedPrecisionOptimWrapper']

_DTYPES = dict(float16=torch.float16, bfloat16=torch.bfloat16)


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(OptimWrapper):
    """Automatic mixed precision on CUDA (fp16/bf16) and on CPU (bf16).

    MMEngine 0.10.7's ``AmpOptimWrapper`` refuses to build without a
    CUDA/NPU/MLU device. This wrapper runs the forward pass under
    ``torch.autocast(device_type, dtype)``:

    * CUDA, ``dtype='float16'`` (the default there): stock AMP with a
      ``torch.amp.GradScaler`` loss scaler (``loss_scale``);
    * CUDA, ``dtype='bfloat16'``: bf16 autocast without a loss scaler (bf16
      has the float32 exponent range); needs a GPU with bf16 support;
    * CPU, ``dtype='bfloat16'`` (the default there): bf16 autocast without a
      loss scaler; ``dtype='float16'`` on CPU uses a CPU ``GradScaler``.

    It takes the same arguments as ``AmpOptimWrapper`` and saves the loss
    scaler under the same ``'loss_scaler'`` key, so configs and checkpoints
    carry over. ``tools/train.py --amp`` selects it.

    Args:
        dtype: ``'float16'``, ``'bfloat16'`` (or the torch dtypes), or
            ``None`` for the device default (fp16 on CUDA, bf16 on CPU).
        loss_scale: Loss scaling of fp16: ``'dynamic'``, a float (static
            scale) or a dict of ``GradScaler`` arguments. Ignored for bf16.
        device_type: ``'cuda'`` or ``'cpu'``; ``None`` picks CUDA when
            available.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self,
                 dtype: Union[None, str, torch.dtype] = None,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 device_type: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if device_type is None:
            device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device_type not in ('cuda', 'cpu'):
            raise ValueError('MixedPrecisionOptimWrapper: device_type must be '
                             f"'cuda', 'cpu' or None, got {device_type!r}")
        if device_type == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError("MixedPrecisionOptimWrapper: device_type='cuda'"
                               ' but CUDA is not available')
        if dtype is None:
            dtype = torch.float16 if device_type == 'cuda' else torch.bfloat16
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise ValueError(
                    'MixedPrecisionOptimWrapper: dtype must be one of '
                    f'{sorted(_DTYPES)} or None, got {dtype!r}')
            dtype = _DTYPES[dtype]
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError('MixedPrecisionOptimWrapper: dtype must be '
                             f'float16 or bfloat16, got {dtype!r}')
        if (dtype == torch.bfloat16 and device_type == 'cuda'
                and not torch.cuda.is_bf16_supported()):
            raise RuntimeError(
                'MixedPrecisionOptimWrapper: this GPU does not support '
                "bfloat16; use dtype='float16'")
        self.device_type = device_type
        self.cast_dtype = dtype
        self._scale_update_param = None
        self.loss_scaler: Optional[torch.amp.GradScaler] = None
        if dtype == torch.float16:
            if loss_scale == 'dynamic':
                self.loss_scaler = torch.amp.GradScaler(device_type)
            elif isinstance(loss_scale, (int, float)) and not isinstance(
                    loss_scale, bool):
                self._scale_update_param = float(loss_scale)
                self.loss_scaler = torch.amp.GradScaler(
                    device_type, init_scale=float(loss_scale))
            elif isinstance(loss_scale, dict):
                self.loss_scaler = torch.amp.GradScaler(
                    device_type, **loss_scale)
            else:
                raise TypeError(
                    'MixedPrecisionOptimWrapper: loss_scale must be '
                    f"'dynamic', a float or a dict, got {loss_scale!r}")

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Back-propagate ``loss`` (scaled when a loss scaler is used).

        Args:
            loss: The loss of the current iteration.
            **kwargs: Passed to ``torch.Tensor.backward``.
        """
        if self.loss_scaler is not None:
            self.loss_scaler.scale(loss).backward(**kwargs)
        else:
            loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        """Update the parameters (through the loss scaler for fp16).

        Args:
            **kwargs: Passed to ``torch.optim.Optimizer.step``.
        """
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict:
        """Optimizer state plus ``'loss_scaler'`` when one is used.

        Returns:
            The state dict.
        """
        state_dict = super().state_dict()
        if self.loss_scaler is not None:
            state_dict['loss_scaler'] = self.loss_scaler.state_dict()
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict from this wrapper or from ``AmpOptimWrapper``.

        Args:
            state_dict: The state dict.
        """
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop('loss_scaler', None)
        if scaler_state is not None:
            if self.loss_scaler is not None:
                self.loss_scaler.load_state_dict(scaler_state)
            else:
                print_log(
                    'MixedPrecisionOptimWrapper: ignoring the saved fp16 loss '
                    f'scaler state (this run uses {self.cast_dtype}).',
                    logger='current', level=logging.WARNING)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Autocast the forward pass (and keep gradient accumulation logic).

        Args:
            model: The training model.
        """
        with super().optim_context(model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield

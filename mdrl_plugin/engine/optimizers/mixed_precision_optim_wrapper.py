"""``AmpOptimWrapper`` that also runs on CPU and uses bf16 without a scaler."""
import logging
from contextlib import contextmanager
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """Autocast on CUDA (fp16 default, bf16) and CPU (bf16 default, fp16).

    fp16 scales the loss with ``torch.amp.GradScaler``; bf16 (float32's
    exponent range) does not (a disabled scaler, not saved). Checkpoints
    keep ``AmpOptimWrapper``'s ``'loss_scaler'`` key.
    ``tools/train.py --amp`` selects it.

    Args:
        dtype: ``'float16'``, ``'bfloat16'`` (or torch dtypes); ``None``:
            fp16 on CUDA, bf16 on CPU.
        loss_scale: fp16 loss scaling: ``'dynamic'``, a float (static) or
            ``GradScaler`` arguments.
        device_type: ``'cuda'`` or ``'cpu'``; ``None``: CUDA if available.
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self,
                 dtype: Union[None, str, torch.dtype] = None,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 device_type: Optional[str] = None,
                 **kwargs) -> None:
        # AmpOptimWrapper.__init__ refuses machines without a GPU
        OptimWrapper.__init__(self, **kwargs)
        name = type(self).__name__
        device_type = device_type or ('cuda' if torch.cuda.is_available()
                                      else 'cpu')
        if device_type not in ('cuda', 'cpu'):
            raise ValueError(f"{name}: device_type must be 'cuda', 'cpu' or "
                             f'None, got {device_type!r}')
        if device_type == 'cuda' and not torch.cuda.is_available():
            raise RuntimeError(f"{name}: device_type='cuda' but CUDA is not "
                               'available')
        dtypes = dict(float16=torch.float16, bfloat16=torch.bfloat16)
        if isinstance(dtype, str) and dtype not in dtypes:
            raise ValueError(f'{name}: dtype must be one of {sorted(dtypes)} '
                             f'or None, got {dtype!r}')
        dtype = dtypes.get(dtype, dtype) or (
            torch.float16 if device_type == 'cuda' else torch.bfloat16)
        if dtype not in dtypes.values():
            raise ValueError(
                f'{name}: dtype must be float16 or bfloat16, got {dtype!r}')
        self.device_type, self.cast_dtype = device_type, dtype
        self._scale_update_param = None
        fp16 = dtype == torch.float16
        if loss_scale == 'dynamic' or not fp16:
            scaler_args = {}
        elif isinstance(loss_scale, (int, float)) and \
                not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            scaler_args = dict(init_scale=float(loss_scale))
        elif isinstance(loss_scale, dict):
            scaler_args = loss_scale
        else:
            raise TypeError(f"{name}: loss_scale must be 'dynamic', a float "
                            f'or a dict, got {loss_scale!r}')
        self.loss_scaler = torch.amp.GradScaler(
            device_type, enabled=fp16, **scaler_args)

    def state_dict(self) -> dict:
        """Optimizer state, plus ``'loss_scaler'`` for fp16.

        Returns:
            The state dict.
        """
        state_dict = super().state_dict()
        if not self.loss_scaler.is_enabled():
            del state_dict['loss_scaler']
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state dict of this wrapper or of ``AmpOptimWrapper``.

        Args:
            state_dict: The state dict.
        """
        if 'loss_scaler' in state_dict and not self.loss_scaler.is_enabled():
            state_dict = dict(state_dict)
            del state_dict['loss_scaler']
            print_log(f'{type(self).__name__}: ignoring the saved fp16 loss '
                      f'scaler state (this run uses {self.cast_dtype}).',
                      logger='current', level=logging.WARNING)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Autocast to ``cast_dtype`` on ``device_type``.

        Args:
            model: The training model.
        """
        with OptimWrapper.optim_context(self, model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield

"""``AmpOptimWrapper`` on CPU too, and bf16 without loss scaling."""
import logging
from contextlib import contextmanager
from typing import Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mdrl_plugin.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class MixedPrecisionOptimWrapper(AmpOptimWrapper):
    """Autocast on CUDA (fp16 default, or bf16) and on CPU (bf16 default, or
    fp16). bf16 has float32's range: its scaler is disabled and not saved.

    Args:
        dtype: ``'float16'`` or ``'bfloat16'`` (or the torch dtype).
        loss_scale: fp16 only: ``'dynamic'``, a float (static) or
            ``GradScaler`` arguments.
        device_type: ``'cuda'`` or ``'cpu'``; default: CUDA if available.
        **kwargs: ``OptimWrapper`` arguments.
    """

    def __init__(self, dtype: Union[None, str, torch.dtype] = None,
                 loss_scale: Union[str, float, dict] = 'dynamic',
                 device_type: Optional[str] = None, **kwargs) -> None:
        OptimWrapper.__init__(self, **kwargs)  # Amp's refuses CPU-only hosts
        name, cuda = type(self).__name__, torch.cuda.is_available()
        device_type = device_type or ('cuda' if cuda else 'cpu')
        if device_type not in ('cuda', 'cpu'):
            raise ValueError(f"{name}: device_type must be 'cuda', 'cpu' or "
                             f'None, got {device_type!r}')
        if device_type == 'cuda' and not cuda:
            raise RuntimeError(f"{name}: device_type='cuda' but CUDA is not "
                               'available')
        dtypes = dict(float16=torch.float16, bfloat16=torch.bfloat16)
        if isinstance(dtype, str) and dtype not in dtypes:
            raise ValueError(f'{name}: dtype must be one of {sorted(dtypes)} '
                             f'or None, got {dtype!r}')
        dtype = dtypes.get(dtype, dtype) or dtypes[
            'float16' if device_type == 'cuda' else 'bfloat16']
        if dtype not in dtypes.values():
            raise ValueError(
                f'{name}: dtype must be float16 or bfloat16, got {dtype!r}')
        self.device_type, self.cast_dtype = device_type, dtype
        fp16, self._scale_update_param = dtype == torch.float16, None
        if isinstance(loss_scale, (int, float)) and fp16 and \
                not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            loss_scale = dict(init_scale=float(loss_scale))
        elif loss_scale == 'dynamic' or not fp16:
            loss_scale = {}
        elif not isinstance(loss_scale, dict):
            raise TypeError(f"{name}: loss_scale must be 'dynamic', a float "
                            f'or a dict, got {loss_scale!r}')
        self.loss_scaler = torch.amp.GradScaler(device_type, enabled=fp16,
                                                **loss_scale)

    def state_dict(self) -> dict:
        """``AmpOptimWrapper``'s, without ``'loss_scaler'`` if disabled."""
        state_dict = super().state_dict()
        if not self.loss_scaler.is_enabled():
            del state_dict['loss_scaler']
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a state of this wrapper or of ``AmpOptimWrapper``."""
        if 'loss_scaler' in state_dict and not self.loss_scaler.is_enabled():
            state_dict = {k: v for k, v in state_dict.items()
                          if k != 'loss_scaler'}
            print_log(f'{type(self).__name__}: ignoring the saved fp16 loss '
                      f'scaler state (this run uses {self.cast_dtype}).',
                      logger='current', level=logging.WARNING)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        """Autocast to ``cast_dtype`` on ``device_type``."""
        with OptimWrapper.optim_context(self, model), torch.autocast(
                self.device_type, dtype=self.cast_dtype):
            yield

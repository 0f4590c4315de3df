"""Loading pretrained weights from local files (never from the internet)."""
import os
from typing import Dict

import torch

__all__ = ['load_state_dict_file']


def load_state_dict_file(path: str, what: str = 'weights') -> Dict[str, torch.Tensor]:
    """Read a state dict from a local ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Torch files are read with the plugin's safe loader (no arbitrary unpickling).
    A checkpoint that wraps the weights in ``state_dict``/``model``/``module``
    is unwrapped, and a ``module.`` prefix (from DDP) is removed.

    Args:
        path: File path.
        what: Words for error messages, e.g. ``'ViT pretrained weights'``.

    Returns:
        The state dict.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'{what}: file {path!r} does not exist. Put the checkpoint file '
            'there (a .pth/.bin/.safetensors state dict) or change the path in '
            'the config.')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        from mdrl_plugin.engine import safe_torch_load
        state = safe_torch_load(path, map_location='cpu')
    for key in ('state_dict', 'model', 'module'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ValueError(f'{what}: {path!r} does not hold a state dict '
                         f'(got {type(state).__name__}).')
    return {(k[7:] if k.startswith('module.') else k): v
            for k, v in state.items()}

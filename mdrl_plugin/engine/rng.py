"""Capture and restore the global random number generator states.

The states are stored in plain containers and tensors only (no numpy objects),
so they pass :func:`mdrl_plugin.engine.safe_torch_load`'s allow-list and any
``weights_only`` loader.
"""
import random
from typing import Any, Dict

import numpy as np
import torch

__all__ = ['get_rng_state', 'set_rng_state']


def get_rng_state() -> Dict[str, Any]:
    """The states of Python's ``random``, numpy's global RNG and torch's RNGs.

    Returns:
        ``dict(python=..., numpy=dict(...), torch=ByteTensor, cuda=[...])``;
        ``cuda`` is present only when CUDA has been initialised.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    state: Dict[str, Any] = dict(
        python=dict(version=version, internal=list(internal), gauss=gauss),
        numpy=dict(
            bit_generator=str(name),
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached_gauss)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state`.

    Args:
        state: The captured states. A ``cuda`` entry is applied only when the
            number of visible devices matches.

    Raises:
        KeyError: A required entry (``python``, ``numpy``, ``torch``) is
            missing.
    """
    for key in ('python', 'numpy', 'torch'):
        if key not in state:
            raise KeyError(f'RNG state lacks the {key!r} entry; got keys '
                           f'{sorted(state)}')
    py = state['python']
    random.setstate((py['version'], tuple(py['internal']), py['gauss']))
    npy = state['numpy']
    keys = npy['keys']
    # a resumed checkpoint may have been mapped to the GPU
    keys = (keys.cpu().numpy()
            if isinstance(keys, torch.Tensor) else np.asarray(keys))
    np.random.set_state((npy['bit_generator'], keys.astype(np.uint32),
                         npy['pos'], npy['has_gauss'], npy['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    cuda_states = state.get('cuda')
    if (cuda_states and torch.cuda.is_available()
            and len(cuda_states) == torch.cuda.device_count()):
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])

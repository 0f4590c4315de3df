"""What MMEngine lacks: safe and strict checkpoint loading, atomic writes,
exact resume, AMP on CPU, a CPU distributed fallback, and a few hooks."""
from .checkpoint import (
    CheckpointLoadError,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    disable_safe_checkpoint_loading,
    enable_safe_checkpoint_loading,
    load_model_weights,
    safe_checkpoint_loading_enabled,
    safe_torch_load,
)
from .dist import LAUNCHERS, adapt_cfg_for_device, setup_distributed
from .fileio import AtomicWriteError
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks
from .optimizers import *  # noqa: F401,F403
from .optimizers import __all__ as _optimizers
from .text_cache import TextFeatureCache, text_cache_fingerprint

__all__ = [
    'CheckpointLoadError', 'CheckpointMismatchError', 'UnsafeCheckpointError',
    'disable_safe_checkpoint_loading', 'enable_safe_checkpoint_loading',
    'load_model_weights', 'safe_checkpoint_loading_enabled',
    'safe_torch_load', 'LAUNCHERS', 'adapt_cfg_for_device',
    'setup_distributed', 'AtomicWriteError',
    'TextFeatureCache', 'text_cache_fingerprint'
] + _hooks + _optimizers

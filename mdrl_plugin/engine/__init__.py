"""Engine pieces around the MMEngine Runner.

* safe checkpoint loading (:func:`safe_torch_load`; MMEngine's loader for
  local paths after :func:`enable_safe_checkpoint_loading`, which importing
  the plugin does not call), strict weight loading
  (:func:`load_model_weights`, :class:`CheckpointMismatchError`) and atomic
  checkpoint writes (file backend ``'local_atomic'``);
* hooks: :class:`CheckpointLoadingHook`, :class:`FiniteLossHook`,
  :class:`ExactResumeHook`, :class:`NumClassesCheckHook`,
  :class:`FrozenTextCacheHook` (with :class:`TextFeatureCache`, an exact
  memory-mapped cache of a frozen BERT's outputs);
* :class:`MixedPrecisionOptimWrapper` (AMP on CUDA and CPU) and
  :class:`TrainableParamsOptimWrapperConstructor` (frozen parameters stay out
  of the optimizer);
* distributed set-up with a CPU/gloo fallback and the tools' config helpers
  (the command-line options live in ``tools/_common.py``).
"""
from . import hooks, optimizers  # noqa: F401  (registers)
from .checkpoint import (ALLOWED_CHECKPOINT_GLOBALS, CheckpointLoadError,
                         CheckpointMismatchError, StateDictMatch,
                         UnsafeCheckpointError, check_state_dict,
                         disable_safe_checkpoint_loading,
                         enable_safe_checkpoint_loading,
                         find_resumable_checkpoint, is_complete_checkpoint,
                         load_from_local_safe, load_model_weights,
                         match_state_dict, safe_checkpoint_loading_enabled,
                         safe_torch_load, set_allow_unsafe_checkpoints,
                         unsafe_checkpoints_allowed)
from .dist import (LAUNCHERS, adapt_cfg_for_device, setup_distributed,
                   teardown_distributed)
from .fileio import (AtomicLocalBackend, AtomicWriteError, atomic_write,
                     atomic_write_bytes)
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .rng import get_rng_state, set_rng_state
from .runner_utils import (apply_resume, default_work_dir, enable_amp,
                           load_config, prepare_determinism)
from .text_cache import TextFeatureCache, text_cache_fingerprint

__all__ = [
    'ALLOWED_CHECKPOINT_GLOBALS', 'CheckpointLoadError',
    'UnsafeCheckpointError', 'safe_torch_load', 'set_allow_unsafe_checkpoints',
    'unsafe_checkpoints_allowed', 'load_from_local_safe',
    'find_resumable_checkpoint', 'is_complete_checkpoint', 'LAUNCHERS',
    'setup_distributed', 'teardown_distributed', 'adapt_cfg_for_device',
    'AtomicLocalBackend', 'AtomicWriteError', 'atomic_write',
    'atomic_write_bytes', 'get_rng_state',
    'set_rng_state', 'apply_resume', 'default_work_dir', 'enable_amp',
    'load_config', 'prepare_determinism', 'CheckpointMismatchError',
    'StateDictMatch', 'check_state_dict', 'match_state_dict',
    'load_model_weights', 'enable_safe_checkpoint_loading',
    'disable_safe_checkpoint_loading', 'safe_checkpoint_loading_enabled',
    'TextFeatureCache', 'text_cache_fingerprint'
] + hooks.__all__ + optimizers.__all__

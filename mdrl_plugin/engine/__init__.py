"""Engine pieces around the MMEngine Runner.

* safe checkpoint loading (:func:`safe_torch_load`, registered as MMEngine's
  loader for local paths) and atomic checkpoint writes (file backend
  ``'local_atomic'``);
* hooks: :class:`FiniteLossHook`, :class:`ExactResumeHook`,
  :class:`FrozenTextCacheHook` (with :class:`TextFeatureCache`, an exact
  memory-mapped cache of a frozen BERT's outputs);
* :class:`MixedPrecisionOptimWrapper` (AMP on CUDA and CPU) and
  :class:`TrainableParamsOptimWrapperConstructor` (frozen parameters stay out
  of the optimizer);
* distributed set-up with a CPU/gloo fallback and the tools' config helpers.
"""
from . import hooks, optimizers  # noqa: F401  (registers)
from .checkpoint import (ALLOWED_CHECKPOINT_GLOBALS, CheckpointLoadError,
                         UnsafeCheckpointError, find_resumable_checkpoint,
                         is_complete_checkpoint, load_from_local_safe,
                         safe_torch_load, set_allow_unsafe_checkpoints,
                         unsafe_checkpoints_allowed)
from .dist import (LAUNCHERS, adapt_cfg_for_device, setup_distributed,
                   teardown_distributed)
from .fileio import AtomicLocalBackend, atomic_write, atomic_write_bytes
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .rng import get_rng_state, set_rng_state
from .text_cache import TextFeatureCache, text_cache_fingerprint
from .runner_utils import (add_common_args, apply_common_args, apply_resume,
                           default_work_dir, enable_amp, load_config,
                           prepare_determinism)

__all__ = [
    'ALLOWED_CHECKPOINT_GLOBALS', 'CheckpointLoadError',
    'UnsafeCheckpointError', 'safe_torch_load', 'set_allow_unsafe_checkpoints',
    'unsafe_checkpoints_allowed', 'load_from_local_safe',
    'find_resumable_checkpoint', 'is_complete_checkpoint', 'LAUNCHERS',
    'setup_distributed', 'teardown_distributed', 'adapt_cfg_for_device',
    'AtomicLocalBackend', 'atomic_write', 'atomic_write_bytes', 'get_rng_state',
    'set_rng_state', 'apply_resume', 'default_work_dir', 'enable_amp',
    'load_config', 'prepare_determinism', 'add_common_args', 'apply_common_args',
    'TextFeatureCache', 'text_cache_fingerprint'
] + hooks.__all__ + optimizers.__all__

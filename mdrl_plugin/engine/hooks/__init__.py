from .checkpoint_loading_hook import CheckpointLoadingHook
from .exact_resume_hook import ExactResumeHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .frozen_text_cache_hook import FrozenTextCacheHook
from .num_classes_check_hook import (
    NumClassesCheckHook,
    NumClassesMismatchError,
)

__all__ = [
    'CheckpointLoadingHook', 'ExactResumeHook', 'FiniteLossHook',
    'FrozenTextCacheHook', 'NonFiniteLossError', 'NumClassesCheckHook',
    'NumClassesMismatchError'
]

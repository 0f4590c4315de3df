"""Runner hooks of mdrl-plugin (in ``mdrl_plugin.registry.HOOKS``)."""
from .exact_resume_hook import ExactResumeHook
from .finite_loss_hook import FiniteLossHook, NonFiniteLossError
from .frozen_text_cache_hook import FrozenTextCacheHook
from .num_classes_check_hook import NumClassesCheckHook

__all__ = ['ExactResumeHook', 'FiniteLossHook', 'FrozenTextCacheHook',
           'NonFiniteLossError', 'NumClassesCheckHook']

"""Safe and strict checkpoint loading for a Runner, set by config."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader

from mdrl_plugin.registry import HOOKS

from ..checkpoint import (
    enable_safe_checkpoint_loading,
    load_state_dict_checked,
)


@HOOKS.register_module()
class CheckpointLoadingHook(Hook):
    """During the run, read local checkpoints with ``safe_torch_load`` and
    raise ``CheckpointMismatchError`` for weights that do not fit the model.

    Args:
        allow_globals: Extra trusted ``'module.Name'`` globals.
        allow_partial: Load what fits and log the rest (MMEngine's own
            non-strict load).
        allow_unsafe: Full unpickling (trusted files only).
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_globals: Sequence[str] = (),
                 allow_partial: bool = False,
                 allow_unsafe: bool = False) -> None:
        self.allow_globals, self.allow_partial = allow_globals, allow_partial
        self.allow_unsafe, self._previous = allow_unsafe, None

    def before_run(self, runner) -> None:
        """Switch the safe loader on (MMEngine loads after ``before_run``)."""
        # MMEngine has no public getter for a registered loader
        self._previous = CheckpointLoader._schemes.get('')
        enable_safe_checkpoint_loading(self.allow_globals, self.allow_unsafe)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Load the weights strictly (before MMEngine's non-strict load):
        refuse weights that do not fit the model."""
        if not self.allow_partial:
            load_state_dict_checked(
                runner.model, checkpoint.get('state_dict', checkpoint),
                runner.cfg.get('load_from') or '<checkpoint>',
                config=getattr(runner.cfg, 'filename', None))

    def after_run(self, runner) -> None:
        """Put the previous loader back."""
        if self._previous is not None:
            CheckpointLoader.register_scheme('', self._previous, force=True)
            self._previous = None

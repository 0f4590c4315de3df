"""Safe and strict checkpoint loading for a Runner, set by config."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.runner.checkpoint import CheckpointLoader

from mdrl_plugin.registry import HOOKS
from ..checkpoint import check_state_dict, enable_safe_checkpoint_loading


@HOOKS.register_module()
class CheckpointLoadingHook(Hook):
    """During the run, read local checkpoints with ``safe_torch_load`` and
    raise ``CheckpointMismatchError`` for weights that do not fit the model.

    Args:
        allow_globals: Extra trusted ``'module.Name'`` globals.
        allow_partial: Load what fits and log the rest.
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
        self._previous = CheckpointLoader._schemes.get('')
        enable_safe_checkpoint_loading(self.allow_globals, self.allow_unsafe)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse weights that do not fit the model."""
        check_state_dict(
            runner.model, checkpoint.get('state_dict', checkpoint),
            runner._load_from or '<checkpoint>', self.allow_partial,
            config=getattr(runner.cfg, 'filename', None))

    def after_run(self, runner) -> None:
        """Put the previous loader back."""
        if self._previous is not None:
            CheckpointLoader._schemes[''] = self._previous
            self._previous = None

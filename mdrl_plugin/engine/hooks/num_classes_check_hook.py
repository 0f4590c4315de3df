"""Compare the model's number of identities with the training dataset's."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mdrl_plugin.registry import HOOKS

__all__ = ['NumClassesCheckHook', 'NumClassesMismatchError']


class NumClassesMismatchError(ValueError):
    """``model.num_classes`` differs from the training split's identities."""


@HOOKS.register_module()
class NumClassesCheckHook(Hook):
    """Stop before training when ``model.num_classes`` does not match the data.

    This hook owns the invariant ``model.num_classes ==
    dataset.metainfo['num_classes']``: the identity classifiers need exactly
    as many classes as the training split has identities. Too few classes
    would fail at the first out-of-range label (``IDLoss`` checks the labels
    against its logits); too many would train silently with unused classes.
    Either way this hook stops before the first iteration with
    :class:`NumClassesMismatchError`, naming both numbers and the config key
    to change.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        """Check the numbers.

        Args:
            runner: The runner.
        """
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        expected = runner.train_dataloader.dataset.metainfo.get('num_classes')
        actual = getattr(model, 'num_classes', None)
        if expected is None or actual is None or expected == actual:
            return
        raise NumClassesMismatchError(
            f'model.num_classes={actual} but the training dataset '
            f'({type(runner.train_dataloader.dataset).__name__}, split '
            f"{runner.train_dataloader.dataset.metainfo.get('split')!r}) has "
            f'{expected} identities: set model.num_classes={expected} in the '
            f'config (or --cfg-options model.num_classes={expected}).')

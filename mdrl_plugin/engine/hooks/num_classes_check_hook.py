"""Compare the model's number of identities with the training data's."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mdrl_plugin.registry import HOOKS


class NumClassesMismatchError(ValueError):
    """``model.num_classes`` differs from the training split's identities."""


@HOOKS.register_module()
class NumClassesCheckHook(Hook):
    """Stop before training when ``model.num_classes`` differs from the
    training dataset's ``metainfo['num_classes']``."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        """Raise :class:`NumClassesMismatchError` if the numbers differ."""
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        dataset = runner.train_dataloader.dataset
        expected = dataset.metainfo.get('num_classes')
        actual = getattr(model, 'num_classes', None)
        if None not in (expected, actual) and expected != actual:
            raise NumClassesMismatchError(
                f'model.num_classes={actual} but the training dataset '
                f'({type(dataset).__name__}, split '
                f"{dataset.metainfo.get('split')!r}) has {expected} "
                f'identities: set model.num_classes={expected} in the config '
                f'(or --cfg-options model.num_classes={expected}).')

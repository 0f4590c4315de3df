"""``TimmCNNEncoder``: a timm CNN as image encoder, under its former name."""
from typing import Optional

from mdrl_plugin.registry import MODELS

from .adapter import BackboneAdapter

__all__ = ['TimmCNNEncoder']


@MODELS.register_module()
class TimmCNNEncoder(BackboneAdapter):
    """``BackboneAdapter(timm_model=arch)`` under its former name and fields.

    The last feature map ``[B, C, h, w]`` of a timm CNN (e.g. ResNet-50) is
    flattened into ``h * w`` tokens; the global feature is their mean. Older
    configs and checkpoints (whose keys name the CNN ``cnn.``) still load.

    Args:
        arch: timm model name, e.g. ``'resnet50'``.
        pretrained: ``None``; a local checkpoint file; a timm tag of ``arch``
            such as ``'resnet50.tv_in1k'`` (``'timm'``: the default tag); or
            an ``http(s)://`` URL; loaded strictly by timm, the classifier
            dropped (:func:`create_timm_model`).
        out_channels: If set, a linear projection of all outputs to this width.
        arch_kwargs: Extra arguments of ``timm.create_model``.
        with_cp: Activation checkpointing, as for :class:`BackboneAdapter`.
        init_cfg: MMEngine init config.
    """

    def __init__(self,
                 arch: str = 'resnet50',
                 pretrained: Optional[str] = None,
                 out_channels: Optional[int] = None,
                 arch_kwargs: Optional[dict] = None,
                 with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(timm_model=arch, timm_kwargs=arch_kwargs,
                         timm_checkpoint=pretrained, out_channels=out_channels,
                         probe_size=(64, 64), with_cp=with_cp,
                         init_cfg=init_cfg)
        self.register_load_state_dict_pre_hook(_former_keys)


def _former_keys(module, state_dict, prefix, *args) -> None:
    """Read a former ``TimmCNNEncoder``'s ``cnn.*`` keys as ``backbone.*``."""
    for key in [k for k in state_dict if k.startswith(prefix + 'cnn.')]:
        state_dict[prefix + 'backbone.' + key[len(prefix) + 4:]] = \
            state_dict.pop(key)

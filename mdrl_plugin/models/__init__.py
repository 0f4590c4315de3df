from . import (  # noqa: F401
    backbones,
    data_preprocessors,
    heads,
    losses,
    necks,
    retrievers,
    weights,
)
from .backbones import *  # noqa: F401,F403
from .data_preprocessors import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .retrievers import *  # noqa: F401,F403
from .weights import *  # noqa: F401,F403

__all__ = (
    backbones.__all__ + data_preprocessors.__all__ + heads.__all__ +
    losses.__all__ + necks.__all__ + retrievers.__all__ + weights.__all__)

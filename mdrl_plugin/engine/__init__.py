from . import hooks  # noqa: F401
from .hooks import *  # noqa: F401,F403

__all__ = hooks.__all__

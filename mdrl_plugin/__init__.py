"""mdrl-plugin: the MDRL text-based person search network as MMEngine
components."""
# the subpackages register their components on import
from . import apis, datasets, engine, evaluation, models  # noqa: F401
from .version import __version__

__all__ = ['__version__', 'apis', 'datasets', 'engine', 'evaluation', 'models']

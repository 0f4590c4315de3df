from .mdrl import MDRL

__all__ = ['MDRL']

from .dll import DisorderedLocalLearning

__all__ = ['DisorderedLocalLearning']

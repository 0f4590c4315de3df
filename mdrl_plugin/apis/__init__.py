"""Text-to-image person search with PyTorch: the searcher and a picture.

The index, ranking, labels and hit types are :mod:`mdrl_deploy`'s (shared
with the torch-free ONNX path); import them from there.
"""
from .searcher import PersonSearcher, RetrievalModel, build_retrieval_model
from .visualize import draw_search_results

__all__ = ['PersonSearcher', 'RetrievalModel', 'build_retrieval_model',
           'draw_search_results']

"""Text-to-image person search with PyTorch: the searcher and a picture
(index, ranking, labels and hits: :mod:`mdrl_deploy`)."""
from .searcher import PersonSearcher, RetrievalModel, build_retrieval_model
from .visualize import draw_search_results

__all__ = ['PersonSearcher', 'RetrievalModel', 'build_retrieval_model',
           'draw_search_results']

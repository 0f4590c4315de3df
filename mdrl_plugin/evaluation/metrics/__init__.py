"""Evaluation metrics registered in ``mdrl_plugin.registry.METRICS``."""
from .retrieval import PersonRetrievalMetric

__all__ = ['PersonRetrievalMetric']

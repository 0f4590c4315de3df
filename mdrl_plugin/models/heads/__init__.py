from .cim import CrossModalInteraction, IdentityClassifier

__all__ = ['CrossModalInteraction', 'IdentityClassifier']

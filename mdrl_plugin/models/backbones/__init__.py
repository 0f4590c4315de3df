from .cnn import TimmCNNEncoder
from .text_encoder import BertTextEncoder
from .vit import TimmVisionTransformer

__all__ = ['TimmVisionTransformer', 'TimmCNNEncoder', 'BertTextEncoder']

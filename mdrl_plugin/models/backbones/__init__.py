from .adapter import BackboneAdapter, create_timm_model, read_tokens
from .cnn import TimmCNNEncoder
from .text_encoder import BertTextEncoder
from .vit import TimmVisionTransformer

__all__ = ['BackboneAdapter', 'read_tokens', 'TimmVisionTransformer',
           'TimmCNNEncoder', 'BertTextEncoder', 'create_timm_model']

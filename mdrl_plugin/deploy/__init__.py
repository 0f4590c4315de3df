"""ONNX export of the retrieval paths (needs torch; the runtime is mdrl_deploy)."""
from .export import (DEFAULT_OPSET, ExportError, ImageRetrievalBranch,
                     fixed_group_tokens,
                     TextRetrievalBranch, describe_test_pipeline, export_onnx)

__all__ = [
    'DEFAULT_OPSET', 'ExportError', 'ImageRetrievalBranch',
    'TextRetrievalBranch', 'describe_test_pipeline', 'export_onnx',
    'fixed_group_tokens'
]

"""ONNX export of the retrieval paths (needs torch; the runtime is
mdrl_deploy).

Named `export` (formerly `mdrl_plugin.deploy`) so that it cannot be mistaken
for the torch-free `mdrl_deploy` package that runs what it writes.
"""
from .export import (
                     DEFAULT_OPSET,
                     ExportError,
                     RetrievalBranch,
                     describe_test_pipeline,
                     export_onnx,
                     fixed_group_tokens,
)
from .parity import split_parity

__all__ = [
    'DEFAULT_OPSET', 'ExportError', 'RetrievalBranch',
    'describe_test_pipeline', 'export_onnx', 'fixed_group_tokens',
    'split_parity'
]

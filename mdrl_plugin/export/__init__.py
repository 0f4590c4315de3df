"""ONNX export of the retrieval paths (needs torch); the torch-free
:mod:`mdrl_deploy` runs what it writes."""
from .export import (
    ExportError,
    describe_test_pipeline,
    export_onnx,
    fixed_group_tokens,
    split_parity,
)

__all__ = [
    'ExportError', 'describe_test_pipeline', 'export_onnx',
    'fixed_group_tokens', 'split_parity'
]

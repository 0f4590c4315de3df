"""Export the retrieval paths of an MDRL checkpoint to ONNX.

Writes the folder of :mod:`mdrl_deploy.manifest` (image and text graphs,
fast tokenizer, ``mdrl_export.json``), checked with ONNX Runtime against
PyTorch before it is kept.
"""
import contextlib
import datetime
import json
import math
import os
import os.path as osp
import re
import shutil
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from unittest import mock

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

from mdrl_deploy.manifest import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    IMAGE_ONNX,
    MANIFEST_NAME,
    TEXT_ONNX,
    TOKENIZER_DIR,
)
from mdrl_deploy.utils import atomic_write_bytes, remove_stale_temps, temp_path

__all__ = ['ExportError', 'fixed_group_tokens', 'describe_test_pipeline',
           'export_onnx']

#: ONNX opset of the graphs (ONNX Runtime >= 1.14 reads it).
DEFAULT_OPSET = 18
#: Largest accepted |ONNX - PyTorch| feature difference of the self-check.
DEFAULT_ATOL = 1e-4
_LOADERS = ('LoadPersonImage', 'LoadImageFromFile')
_PACKERS = ('PackTextImageInputs', 'PackInputs')


class ExportError(RuntimeError):
    """The model (or its test pipeline) cannot be represented by the export."""


class RetrievalBranch(nn.Module):
    """``model.<method>(*inputs)`` as a module to trace, e.g. ``method=
    'extract_image_feat'`` or ``'extract_text_feat'``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The L2-normalised retrieval features."""
        return getattr(self.model, self.method)(*inputs)


def describe_test_pipeline(pipeline: Sequence[dict],
                           bgr_to_rgb: bool) -> Dict[str, Any]:
    """What the torch-free preprocessing must repeat of the test pipeline.

    Supported: a loader (cv2 decoding, colour), ``Resize`` with
    ``keep_ratio=False`` and bilinear cv2 interpolation, and a packer.

    Args:
        pipeline: The test pipeline configs.
        bgr_to_rgb: ``bgr_to_rgb`` of the data preprocessor.

    Returns:
        ``dict(height, width, channel_order, interpolation)``.

    Raises:
        ExportError: Naming the transform (or option) that is not supported.
    """
    size, order = None, None
    for i, t in enumerate(pipeline):
        kind = t.get('type')
        where = f'test pipeline step {i} ({kind})'
        if kind in _LOADERS:
            if t.get('imdecode_backend', 'cv2') != 'cv2' or \
                    t.get('color_type', 'color') != 'color':
                raise ExportError(
                    f'{where}: only imdecode_backend="cv2" and color_type='
                    f'"color" are reproduced by the exported preprocessing, '
                    f'got {t}')
            order = t.get('channel_order', 'bgr')
        elif kind == 'Resize':
            if t.get('keep_ratio', False) or 'scale' not in t:
                raise ExportError(
                    f'{where}: the export needs a fixed size (scale=(W, H), '
                    f'keep_ratio=False), got {t}')
            if t.get('interpolation', 'bilinear') != 'bilinear' or \
                    t.get('backend', 'cv2') != 'cv2':
                raise ExportError(
                    f'{where}: only bilinear cv2 resizing is reproduced, got '
                    f'{t}')
            size = tuple(int(v) for v in t['scale'])
        elif kind not in _PACKERS:
            raise ExportError(
                f'{where} is not supported by the ONNX export (supported: '
                f'{", ".join(_LOADERS)}, Resize(keep_ratio=False), '
                f'{", ".join(_PACKERS)}).')
    if order is None or size is None:
        raise ExportError(
            'The test pipeline needs a loader and a fixed-size Resize for '
            f'the export; got {[t.get("type") for t in pipeline]}')
    if bgr_to_rgb:
        order = 'rgb' if order == 'bgr' else 'bgr'
    return dict(height=size[1], width=size[0], channel_order=order,
                interpolation='bilinear')


def _traceable_mha_forward(mha: nn.MultiheadAttention):
    """``mha.forward`` (batch-first self-attention) with shape-agnostic
    reshapes: ``F.multi_head_attention_forward`` freezes batch size and
    length into the traced graph (torch 2.14)."""

    def forward(query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        b, n, d = query.shape
        heads = mha.num_heads
        qkv = F.linear(query, mha.in_proj_weight, mha.in_proj_bias)
        qkv = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // heads)
        if key_padding_mask is not None:
            mask = key_padding_mask[:, None, None, :]
            if mask.dtype == torch.bool:
                mask = torch.zeros_like(mask, dtype=scores.dtype).masked_fill(
                    mask, float('-inf'))
            scores = scores + mask
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
        return F.linear(out, mha.out_proj.weight, mha.out_proj.bias), None

    return forward


@contextlib.contextmanager
def _traceable(model: nn.Module):
    """Meanwhile: every ``nn.MultiheadAttention`` gets a traceable forward,
    DLL the fixed grouping of :func:`fixed_group_tokens`, and the fused
    attention fast path (no ONNX form) is off.

    Raises:
        ExportError: For an attention layout the replacement does not cover
            (naming the module).
    """
    from mdrl_plugin.models.necks import dll
    with contextlib.ExitStack() as stack:
        stack.callback(torch.backends.mha.set_fastpath_enabled,
                       torch.backends.mha.get_fastpath_enabled())
        torch.backends.mha.set_fastpath_enabled(False)
        stack.enter_context(
            mock.patch.object(dll, 'group_tokens', fixed_group_tokens))
        for name, mod in model.named_modules():
            if not isinstance(mod, nn.MultiheadAttention):
                continue
            if not (mod.batch_first and mod._qkv_same_embed_dim and
                    mod.bias_k is None and mod.in_proj_bias is not None):
                raise ExportError(
                    f'module {name!r} (nn.MultiheadAttention) is not the '
                    'batch-first self-attention with packed projections and '
                    'biases that the ONNX export supports.')
            stack.enter_context(mock.patch.object(
                mod, 'forward', _traceable_mha_forward(mod)))
        yield


def fixed_group_tokens(tokens: torch.Tensor,
                       padding_mask: Optional[torch.Tensor], num_groups: int,
                       shuffle: bool = False
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """DLL's evaluation (positional) grouping as one gather, which traces
    with a dynamic length.

    Equals :func:`mdrl_plugin.models.necks.dll.group_tokens` with
    ``shuffle=False`` for right-padded sequences: group ``p`` of a sample
    with ``n`` real tokens holds places ``ceil(p n / P)`` to
    ``ceil((p + 1) n / P) - 1``.

    Args:
        tokens: ``[B, L, D]``.
        padding_mask: ``[B, L]`` bool (True = padding, at the end) or None.
        num_groups: Number of groups P.
        shuffle: Must be False (random grouping is not exportable).

    Returns:
        groups ``[B, P, ceil(L / P), D]`` and their empty-slot mask.
    """
    if shuffle:
        raise ExportError('DLL with random grouping (training mode) cannot be '
                          'exported; put the model in eval mode.')
    b, length, d = tokens.shape
    size = (length + num_groups - 1) // num_groups
    valid = torch.ones_like(tokens[..., 0], dtype=torch.bool) \
        if padding_mask is None else ~padding_mask
    n = valid.sum(dim=1).clamp(min=1)[:, None, None]  # [B, 1, 1]
    group = torch.arange(num_groups, device=tokens.device)[None, :, None]
    start = torch.div(group * n + num_groups - 1, num_groups,
                      rounding_mode='floor')
    end = torch.div((group + 1) * n + num_groups - 1, num_groups,
                    rounding_mode='floor')
    place = start + torch.arange(size, device=tokens.device)[None, None, :]
    filled = place < end  # [B, P, G]
    index = place.clamp(max=length - 1).reshape(b, -1, 1).expand(-1, -1, d)
    groups = tokens.gather(1, index).reshape(b, num_groups, size, d)
    return groups * filled[..., None].to(tokens.dtype), ~filled


def _module_of_op(branch: nn.Module, inputs: Tuple[torch.Tensor, ...],
                  message: str) -> Optional[str]:
    """The sub-module that holds the operator an exporter error names."""
    match = re.search(r"(aten|prim|onnx)::[A-Za-z0-9_]+", message)
    if not match:
        return None
    try:
        with torch.no_grad():
            graph = torch.jit.trace(branch, inputs,
                                    check_trace=False).inlined_graph
    except Exception:  # tracing may fail too; then only the op is known
        return None
    for node in graph.nodes():
        if node.kind() == match.group(0):
            scope = node.scopeName().split('/')[-1]
            return scope.replace('__module.', '') or None
    return None


def _export_graph(branch: nn.Module, inputs: Tuple[torch.Tensor, ...],
                  path: str, input_names: List[str],
                  dynamic_axes: Dict[str, Dict[int, str]], opset: int,
                  what: str) -> None:
    try:
        with torch.no_grad(), _traceable(branch):
            torch.onnx.export(
                branch, inputs, path, input_names=input_names,
                output_names=['features'], dynamic_axes=dynamic_axes,
                opset_version=opset, do_constant_folding=True,
                dynamo=False)
    except ExportError:
        raise
    except Exception as err:
        message = f'{type(err).__name__}: {err}'
        module = _module_of_op(branch, inputs, message)
        where = f'module {module!r}' if module else \
            f'the {what} branch ({type(branch.model).__name__})'
        raise ExportError(
            f'Cannot export the {what} retrieval path to ONNX opset {opset}: '
            f'{where} uses an operation the exporter cannot represent. '
            f'Exporter said: {message.splitlines()[0][:500]}') from err


def _max_diff(branch: nn.Module, session: Any,
              feeds: List[Dict[str, np.ndarray]]) -> float:
    """Largest |ONNX - PyTorch| feature difference over the feeds."""
    diff = 0.0
    for feed in feeds:
        with torch.no_grad():
            ref = branch(*map(torch.from_numpy, feed.values())).numpy()
        out = session.run(None, feed)[0]
        diff = max(diff, float(np.abs(ref - out).max()) if
                   ref.shape == out.shape else math.inf)
    return diff


def export_onnx(config: Union[str, Config],
                checkpoint: str,
                out_dir: str,
                opset: int = DEFAULT_OPSET,
                atol: float = DEFAULT_ATOL,
                overwrite: bool = False) -> Dict[str, Any]:
    """Export a checkpoint's retrieval paths, tokenizer and manifest.

    The model comes from :func:`~mdrl_plugin.apis.build_retrieval_model`,
    as ``PersonSearcher``'s, so both searchers share the fingerprint and
    index folders. ONNX Runtime must then reproduce PyTorch within ``atol``
    on probes of other batch sizes and text lengths than traced.

    Args:
        config: Config file or :class:`mmengine.Config`.
        checkpoint: Checkpoint file.
        out_dir: Destination folder (empty or absent unless ``overwrite``).
        opset: ONNX opset version.
        atol: Largest accepted max-abs feature difference.
        overwrite: Replace the files of an existing export folder.

    Returns:
        The manifest written to ``out_dir/mdrl_export.json``, with ``check``
        (the measured max-abs differences).

    Raises:
        ExportError: If the model or its test pipeline cannot be exported
            (naming the module or transform), or ONNX differs from PyTorch.
    """
    import onnxruntime as ort

    from mdrl_plugin.apis import build_retrieval_model

    if osp.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f'Export folder {out_dir!r} is not empty; pass overwrite=True '
            '(--overwrite) or choose another folder.')
    built = build_retrieval_model(config, checkpoint)
    model, dp = built.model, built.model.data_preprocessor
    image_spec = describe_test_pipeline(built.pipeline, bool(dp.bgr_to_rgb))
    if not getattr(dp.tokenizer, 'is_fast', False):
        raise ExportError(
            f'The tokenizer of {dp.tokenizer_path!r} is not a fast '
            '(Rust) tokenizer, so no tokenizer.json can be exported for the '
            'torch-free search.')
    layout = model.retrieval_features
    num_groups = int(model.image_local.num_groups) \
        if layout == 'global+local' else None
    files = dict(image=IMAGE_ONNX, text=TEXT_ONNX)

    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)  # of killed exports
    work = temp_path(osp.join(out_dir, 'export'))
    os.makedirs(work)
    try:
        h, w = image_spec['height'], image_spec['width']
        gen = torch.Generator().manual_seed(0)
        names = ['input_ids', 'attention_mask']
        long = ' '.join(['a person with a bag'] * dp.max_length)
        probes = [['a person walking with a bag and a hat', 'a man'],
                  ['a woman'],
                  ['a person', long, 'someone in black shoes carrying a bag']]
        # the first feed is traced; all are checked (other batch sizes and
        # lengths than traced, a caption longer than max_length)
        graphs = dict(
            image=(['images'], {'images': {0: 'batch'}}, [
                {'images': torch.randn(n, 3, h, w, generator=gen).numpy()}
                for n in (2, 1, 3)]),
            text=(names, {k: {0: 'batch', 1: 'length'} for k in names}, [
                {k: tok[k].numpy() for k in names}
                for tok in map(dp.tokenize, probes)]))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        check = {}
        for what, (inputs, axes, feeds) in graphs.items():
            branch = RetrievalBranch(model, f'extract_{what}_feat').eval()
            path = osp.join(work, files[what])
            _export_graph(branch, tuple(map(torch.from_numpy,
                                            feeds[0].values())),
                          path, inputs, dict(axes, features={0: 'batch'}),
                          opset, what)
            session = ort.InferenceSession(
                path, opts, providers=['CPUExecutionProvider'])
            check[what] = _max_diff(branch, session, feeds)
            del session
            if not check[what] <= atol:
                raise ExportError(
                    f'The exported {what} graph does not reproduce PyTorch: '
                    f'max abs feature difference {check[what]:.3g} > '
                    f'{atol:g} on probe inputs (a data-dependent branch of '
                    f'the {what} encoder was probably frozen by tracing).')

        dp.tokenizer.save_pretrained(osp.join(work, TOKENIZER_DIR))
        manifest = dict(
            format=EXPORT_FORMAT,
            version=EXPORT_VERSION,
            opset=opset,
            image=dict(image_spec, mean=dp.mean.flatten().tolist(),
                       std=dp.std.flatten().tolist()),
            text=dict(max_length=int(dp.max_length), tokenizer=TOKENIZER_DIR,
                      pad_token_id=int(dp.tokenizer.pad_token_id or 0)),
            feature=dict(dim=built.fingerprint['feature_dim'], layout=layout,
                         num_groups=num_groups,
                         grouping='fixed' if num_groups else None),
            fingerprint=dict(built.fingerprint),
            files=files,
            check=dict(max_abs_diff=check, atol=atol),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            torch=torch.__version__,
            exporter='torch.onnx.export(dynamo=False)')
        # no manifest, no export: an old one must not name the new files
        with contextlib.suppress(FileNotFoundError):
            os.unlink(osp.join(out_dir, MANIFEST_NAME))
        for name in (*files.values(), TOKENIZER_DIR):
            dst = osp.join(out_dir, name)
            if osp.isdir(dst):
                shutil.rmtree(dst)
            os.replace(osp.join(work, name), dst)
        atomic_write_bytes(json.dumps(manifest, indent=2).encode('utf-8'),
                           osp.join(out_dir, MANIFEST_NAME))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest

"""Export the retrieval paths of an MDRL checkpoint to ONNX.

Writes the folder described in :mod:`mdrl_deploy.manifest`: the image and
text graphs (``extract_image_feat`` / ``extract_text_feat``, so global or
global+local features with the fixed evaluation grouping, as configured;
CIM is not part of retrieval and is not exported), the fast tokenizer files
and ``mdrl_export.json``. Every export is checked against PyTorch with ONNX
Runtime before it is kept.
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

__all__ = ['ExportError', 'fixed_group_tokens', 'RetrievalBranch',
           'describe_test_pipeline', 'export_onnx', 'DEFAULT_OPSET']

#: ONNX opset of the graphs (ONNX Runtime >= 1.14 reads it).
DEFAULT_OPSET = 18
#: Largest accepted |ONNX - PyTorch| feature difference of the self-check.
DEFAULT_ATOL = 1e-4
_LOADERS = ('LoadPersonImage', 'LoadImageFromFile')
_PACKERS = ('PackTextImageInputs', 'PackInputs')


class ExportError(RuntimeError):
    """The model (or its test pipeline) cannot be represented by the export."""


class RetrievalBranch(nn.Module):
    """``model.<method>(*inputs)`` as a module, for tracing: the
    ``extract_image_feat(images)`` or ``extract_text_feat(input_ids,
    attention_mask)`` retrieval features."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The L2-normalised retrieval features."""
        return getattr(self.model, self.method)(*inputs)


def describe_test_pipeline(pipeline: Sequence[dict],
                           bgr_to_rgb: bool) -> Dict[str, Any]:
    """What the torch-free preprocessing must repeat, from the test pipeline.

    Supported: a loader (``LoadPersonImage``/``LoadImageFromFile``, cv2
    decoding, colour), ``Resize`` with ``keep_ratio=False`` and bilinear
    interpolation, and a packer.

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
        elif kind in _PACKERS:
            continue
        else:
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
    """``mha.forward`` for batch-first self-attention, traced with dynamic
    shapes.

    ``F.multi_head_attention_forward`` freezes the batch size and length into
    its reshapes when traced by the TorchScript exporter (torch 2.14), so the
    graph would only accept the traced shapes. This computes the same
    attention with shape-agnostic reshapes.
    """

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
def _traceable_attention(model: nn.Module):
    """Give every ``nn.MultiheadAttention`` a traceable forward meanwhile.

    Raises:
        ExportError: For an attention layout the replacement does not cover
            (naming the module).
    """
    patched = []
    try:
        for name, mod in model.named_modules():
            if not isinstance(mod, nn.MultiheadAttention):
                continue
            if not (mod.batch_first and mod._qkv_same_embed_dim and
                    mod.bias_k is None and mod.in_proj_bias is not None):
                raise ExportError(
                    f'module {name!r} (nn.MultiheadAttention) is not the '
                    'batch-first self-attention with packed projections and '
                    'biases that the ONNX export supports.')
            mod.forward = _traceable_mha_forward(mod)
            patched.append(mod)
        yield
    finally:
        for mod in patched:
            del mod.forward


def fixed_group_tokens(tokens: torch.Tensor,
                       padding_mask: Optional[torch.Tensor], num_groups: int,
                       shuffle: bool = False
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The evaluation (fixed, positional) grouping of DLL, as one gather.

    Gives the output of :func:`mdrl_plugin.models.necks.dll.group_tokens`
    with ``shuffle=False`` for right-padded sequences (real tokens first, as
    tokenizers and patch sequences produce): group ``p`` of a sample with
    ``n`` real tokens holds places ``ceil(p n / P)`` to
    ``ceil((p + 1) n / P) - 1``.
    Unlike the scatter of the original, it traces with a dynamic length.

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


@contextlib.contextmanager
def _traceable_grouping():
    """Let DLL use :func:`fixed_group_tokens` while tracing."""
    from mdrl_plugin.models.necks import dll
    original = dll.group_tokens
    dll.group_tokens = fixed_group_tokens
    try:
        yield
    finally:
        dll.group_tokens = original


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
    # nn.TransformerEncoderLayer's fused inference kernel has no ONNX form;
    # the exporter must trace the equivalent composite path
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.no_grad(), _traceable_attention(branch), \
                _traceable_grouping():
            torch.onnx.export(
                branch, inputs, path, input_names=input_names,
                output_names=['features'], dynamic_axes=dynamic_axes,
                opset_version=opset, do_constant_folding=True,
                dynamo=False)
    except Exception as err:
        message = f'{type(err).__name__}: {err}'
        module = _module_of_op(branch, inputs, message)
        where = f'module {module!r}' if module else \
            f'the {what} branch ({type(branch.model).__name__})'
        raise ExportError(
            f'Cannot export the {what} retrieval path to ONNX opset {opset}: '
            f'{where} uses an operation the exporter cannot represent. '
            f'Exporter said: {message.splitlines()[0][:500]}') from err
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float('inf')
    return float(np.abs(a - b).max()) if a.size else 0.0


def _text_probes(max_length: int) -> List[List[str]]:
    """Caption batches of different sizes/lengths for tracing and checking."""
    long = ' '.join(['a person with a bag'] * max_length)
    return [['a person walking with a bag and a hat', 'a man'],
            ['a woman'],
            ['a person', long, 'someone in black shoes carrying a bag']]


def export_onnx(config: Union[str, Config],
                checkpoint: str,
                out_dir: str,
                opset: int = DEFAULT_OPSET,
                atol: float = DEFAULT_ATOL,
                overwrite: bool = False) -> Dict[str, Any]:
    """Export a checkpoint's retrieval paths, tokenizer and manifest.

    The model is built and loaded by
    :func:`~mdrl_plugin.apis.build_retrieval_model`, as for
    ``PersonSearcher``, so the manifest carries the same fingerprint and
    index folders are shared between the two searchers.
    The graphs are then run with ONNX Runtime on probe inputs (other batch
    sizes and text lengths than traced) and must match PyTorch within
    ``atol``.

    Args:
        config: Config file or :class:`mmengine.Config`.
        checkpoint: Checkpoint file.
        out_dir: Destination folder (created; must be empty or absent unless
            ``overwrite``).
        opset: ONNX opset version.
        atol: Largest accepted max-abs feature difference of the self-check.
        overwrite: Replace the files of an existing export folder.

    Returns:
        The manifest written to ``out_dir/mdrl_export.json``, plus
        ``check`` (the measured max-abs differences).

    Raises:
        ExportError: If the model or its test pipeline cannot be exported
            (the message names the module or transform), or the graphs do
            not reproduce PyTorch.
    """
    import onnxruntime as ort

    from mdrl_plugin.apis import build_retrieval_model

    if osp.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(
            f'Export folder {out_dir!r} is not empty; pass overwrite=True '
            '(--overwrite) or choose another folder.')
    built = build_retrieval_model(config, checkpoint)
    model = built.model
    dp = model.data_preprocessor
    image_spec = describe_test_pipeline(built.pipeline, bool(dp.bgr_to_rgb))
    if not getattr(dp.tokenizer, 'is_fast', False):
        raise ExportError(
            f'The tokenizer of {dp.tokenizer_path!r} is not a fast '
            '(Rust) tokenizer, so no tokenizer.json can be exported for the '
            'torch-free search.')
    layout = model.retrieval_features
    num_groups = None
    if layout == 'global+local':
        num_groups = int(model.image_local.num_groups)
        for name in ('image_local', 'text_local'):
            neck = getattr(model, name)
            if not hasattr(neck, 'num_groups'):
                raise ExportError(
                    f'module {name!r} ({type(neck).__name__}) has no fixed '
                    'grouping (num_groups) to export.')

    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)  # of killed exports
    work = temp_path(osp.join(out_dir, 'export'))
    os.makedirs(work)
    try:
        h, w = image_spec['height'], image_spec['width']
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(2, 3, h, w, generator=gen)
        image_branch = RetrievalBranch(model, 'extract_image_feat').eval()
        _export_graph(image_branch, (images, ), osp.join(work, IMAGE_ONNX),
                      ['images'], {'images': {0: 'batch'},
                                   'features': {0: 'batch'}}, opset, 'image')
        probes = _text_probes(dp.max_length)
        text_branch = RetrievalBranch(model, 'extract_text_feat').eval()
        tok = dp.tokenize(probes[0])
        _export_graph(text_branch, (tok['input_ids'], tok['attention_mask']),
                      osp.join(work, TEXT_ONNX),
                      ['input_ids', 'attention_mask'],
                      {'input_ids': {0: 'batch', 1: 'length'},
                       'attention_mask': {0: 'batch', 1: 'length'},
                       'features': {0: 'batch'}}, opset, 'text')

        # self-check with other batch sizes and lengths than traced
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        img_sess = ort.InferenceSession(osp.join(work, IMAGE_ONNX), opts,
                                        providers=['CPUExecutionProvider'])
        txt_sess = ort.InferenceSession(osp.join(work, TEXT_ONNX), opts,
                                        providers=['CPUExecutionProvider'])
        check = dict(image=0.0, text=0.0)
        with torch.no_grad():
            for n in (1, 3):
                x = torch.randn(n, 3, h, w, generator=gen)
                ref = image_branch(x).numpy()
                out = img_sess.run(None, {'images': x.numpy()})[0]
                check['image'] = max(check['image'], _max_diff(ref, out))
            for texts in probes:
                tok = dp.tokenize(texts)
                ref = text_branch(tok['input_ids'],
                                  tok['attention_mask']).numpy()
                out = txt_sess.run(None, {
                    'input_ids': tok['input_ids'].numpy(),
                    'attention_mask': tok['attention_mask'].numpy()})[0]
                check['text'] = max(check['text'], _max_diff(ref, out))
        del img_sess, txt_sess
        for what, diff in check.items():
            if not diff <= atol:
                raise ExportError(
                    f'The exported {what} graph does not reproduce PyTorch: '
                    f'max abs feature difference {diff:.3g} > {atol:g} on '
                    'probe inputs (a data-dependent branch of the '
                    f'{what} encoder was probably frozen by tracing).')

        dp.tokenizer.save_pretrained(osp.join(work, TOKENIZER_DIR))
        if not osp.isfile(osp.join(work, TOKENIZER_DIR, 'tokenizer.json')):
            raise ExportError('The tokenizer did not write tokenizer.json.')
        manifest = dict(
            format=EXPORT_FORMAT,
            version=EXPORT_VERSION,
            opset=opset,
            image=dict(image_spec,
                       mean=[float(v) for v in dp.mean.flatten().tolist()],
                       std=[float(v) for v in dp.std.flatten().tolist()]),
            text=dict(max_length=int(dp.max_length), tokenizer=TOKENIZER_DIR,
                      pad_token_id=int(dp.tokenizer.pad_token_id or 0)),
            feature=dict(dim=built.fingerprint['feature_dim'], layout=layout,
                         num_groups=num_groups,
                         grouping='fixed' if num_groups else None),
            fingerprint=dict(built.fingerprint),
            files=dict(image=IMAGE_ONNX, text=TEXT_ONNX),
            check=dict(max_abs_diff=check, atol=atol),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            torch=torch.__version__,
            exporter='torch.onnx.export(dynamo=False)')
        # no manifest, no export: an old one must not name the new files
        with contextlib.suppress(FileNotFoundError):
            os.unlink(osp.join(out_dir, MANIFEST_NAME))
        for name in (IMAGE_ONNX, TEXT_ONNX, TOKENIZER_DIR):
            dst = osp.join(out_dir, name)
            if osp.isdir(dst):
                shutil.rmtree(dst)
            os.replace(osp.join(work, name), dst)
        atomic_write_bytes(json.dumps(manifest, indent=2).encode('utf-8'),
                           osp.join(out_dir, MANIFEST_NAME))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest

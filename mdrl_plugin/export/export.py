"""Export the retrieval paths of an MDRL checkpoint to ONNX (the folder of
:mod:`mdrl_deploy.manifest`), checked against PyTorch; parity on a split."""
import contextlib
import copy
import datetime
import json
import math
import os
import os.path as osp
import re
import shutil
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union
from unittest import mock

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mdrl_deploy.manifest import EXPORT_FORMAT, EXPORT_VERSION, MANIFEST_NAME
from mdrl_deploy.utils import atomic_write_bytes, remove_stale_temps, temp_path

DEFAULT_OPSET = 18  #: ONNX opset of the graphs (ONNX Runtime >= 1.14).
DEFAULT_ATOL = 1e-4  #: Largest accepted |ONNX - PyTorch| difference.
_LOAD = dict(imdecode_backend='cv2', color_type='color')
# test-pipeline steps the export repeats: options they need (= the defaults)
_SUPPORTED = dict(
    LoadPersonImage=_LOAD, LoadImageFromFile=_LOAD,
    Resize=dict(keep_ratio=False, interpolation='bilinear', backend='cv2'),
    PackTextImageInputs={}, PackInputs={})


class ExportError(RuntimeError):
    """The model (or its test pipeline) cannot be represented by the export."""


class RetrievalBranch(nn.Module):
    """``model.<method>(*inputs)`` to trace, e.g. the L2-normalised features
    of ``extract_image_feat``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model, self.method = model, method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(*inputs)


def describe_test_pipeline(pipeline: Sequence[dict],
                           bgr_to_rgb: bool) -> Dict[str, Any]:
    """What the torch-free preprocessing must repeat of the test pipeline:
    a cv2 colour loader, a fixed-size bilinear cv2 ``Resize``, a packer.

    Args:
        pipeline: The test pipeline configs.
        bgr_to_rgb: ``bgr_to_rgb`` of the data preprocessor.

    Returns:
        ``dict(height, width, channel_order, interpolation)``; an
        ExportError names a step (or option) that is not supported.
    """
    size, order = None, None
    for i, t in enumerate(pipeline):
        kind = t.get('type')
        where = f'test pipeline step {i} ({kind})'
        if kind not in _SUPPORTED:
            raise ExportError(
                f'{where} is not supported by the ONNX export (supported: '
                f'{", ".join(_SUPPORTED)}).')
        for key, value in _SUPPORTED[kind].items():
            if t.get(key, value) != value:
                raise ExportError(
                    f'{where}: the exported preprocessing repeats only '
                    f'{key}={value!r}, got {t}')
        if kind == 'Resize':
            if 'scale' not in t:
                raise ExportError(f'{where}: the export needs a fixed size '
                                  f'scale=(W, H), got {t}')
            size = tuple(int(v) for v in t['scale'])
        elif kind.startswith('Load'):
            order = t.get('channel_order', 'bgr')
    if order is None or size is None:
        raise ExportError(
            'The test pipeline needs a loader and a fixed-size Resize for '
            f'the export; got {[t.get("type") for t in pipeline]}')
    if bgr_to_rgb:
        order = 'rgb' if order == 'bgr' else 'bgr'
    return dict(height=size[1], width=size[0], channel_order=order,
                interpolation='bilinear')


def _traceable_mha_forward(mha: nn.MultiheadAttention):
    """``mha.forward`` with shape-agnostic reshapes (the built-in one
    freezes batch size and length into the traced graph)."""

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
    """Meanwhile: traceable ``nn.MultiheadAttention`` forwards (else an
    :class:`ExportError` naming the module), DLL's
    :func:`fixed_group_tokens`, no fused attention fast path."""
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
    """DLL's ``group_tokens(shuffle=False)`` for right-padded sequences as
    one gather, traceable with a dynamic length.

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
    group = torch.arange(num_groups + 1, device=tokens.device)[None, :, None]
    bound = torch.div(group * n + num_groups - 1, num_groups,
                      rounding_mode='floor')  # ceil(p n / P): [B, P + 1, 1]
    start, end = bound[:, :-1], bound[:, 1:]
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
        graph = torch.jit.trace(branch, inputs,
                                check_trace=False).inlined_graph
    except Exception:  # tracing may fail too; then only the op is known
        return None
    for node in graph.nodes():
        if node.kind() == match.group(0):
            scope = node.scopeName().split('/')[-1]
            return scope.replace('__module.', '') or None
    return None


@torch.no_grad()
def _export_graph(branch: nn.Module, feeds: List[Dict[str, torch.Tensor]],
                  path: str, opset: int, what: str) -> float:
    """Export ``branch`` traced on ``feeds[0]`` (batch and text length
    dynamic); returns the largest |ONNX - PyTorch| over all feeds."""
    import onnxruntime as ort
    inputs = tuple(feeds[0].values())
    axes = {k: {0: 'batch', 1: 'length'} if v.ndim == 2 else {0: 'batch'}
            for k, v in feeds[0].items()}
    try:
        with _traceable(branch):
            torch.onnx.export(
                branch, inputs, path, input_names=list(feeds[0]),
                output_names=['features'],
                dynamic_axes=dict(axes, features={0: 'batch'}),
                opset_version=opset, do_constant_folding=True, dynamo=False)
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
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(path, opts,
                                   providers=['CPUExecutionProvider'])
    diff = 0.0
    for feed in feeds:
        ref = branch(*feed.values()).numpy()
        out = session.run(None, {k: v.numpy() for k, v in feed.items()})[0]
        diff = max(diff, float(np.abs(ref - out).max()) if
                   ref.shape == out.shape else math.inf)
    return diff


def export_onnx(config: Union[str, Config],
                checkpoint: str,
                out_dir: str,
                opset: int = DEFAULT_OPSET,
                atol: float = DEFAULT_ATOL,
                overwrite: bool = False) -> Dict[str, Any]:
    """Export a checkpoint's retrieval paths, tokenizer and manifest, each
    graph checked with ONNX Runtime (docs/deploy.md, "Export").

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
    """
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
    files = dict(image='image_encoder.onnx', text='text_encoder.onnx')
    tokenizer_dir = 'tokenizer'
    gen = torch.Generator().manual_seed(0)
    long = ' '.join(['a person with a bag'] * dp.max_length)
    # the first probe is traced; all are checked
    probes = dict(
        image=[dict(images=torch.randn(n, 3, image_spec['height'],
                                       image_spec['width'], generator=gen))
               for n in (2, 1, 3)],
        text=[dp.tokenize(texts) for texts in (
            ['a person walking with a bag and a hat', 'a man'], ['a woman'],
            ['a person', long, 'someone in black shoes carrying a bag'])])

    os.makedirs(out_dir, exist_ok=True)
    remove_stale_temps(out_dir)  # of killed exports
    work = temp_path(osp.join(out_dir, 'export'))
    os.makedirs(work)
    try:
        check = {}
        for what, feeds in probes.items():
            check[what] = _export_graph(
                RetrievalBranch(model, f'extract_{what}_feat').eval(), feeds,
                osp.join(work, files[what]), opset, what)
            if not check[what] <= atol:
                raise ExportError(
                    f'The exported {what} graph does not reproduce PyTorch: '
                    f'max abs feature difference {check[what]:.3g} > '
                    f'{atol:g} on probe inputs (a data-dependent branch of '
                    f'the {what} encoder was probably frozen by tracing).')

        dp.tokenizer.save_pretrained(osp.join(work, tokenizer_dir))
        manifest = dict(
            format=EXPORT_FORMAT, version=EXPORT_VERSION, opset=opset,
            image=dict(image_spec, mean=dp.mean.flatten().tolist(),
                       std=dp.std.flatten().tolist()),
            text=dict(max_length=int(dp.max_length), tokenizer=tokenizer_dir,
                      pad_token_id=int(dp.tokenizer.pad_token_id or 0)),
            feature=dict(dim=built.fingerprint['feature_dim'], layout=layout,
                         num_groups=num_groups,
                         grouping='fixed' if num_groups else None),
            fingerprint=dict(built.fingerprint), files=files,
            check=dict(max_abs_diff=check, atol=atol),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'), torch=torch.__version__,
            exporter='torch.onnx.export(dynamo=False)')
        # no manifest, no export: an old one must not name the new files
        with contextlib.suppress(FileNotFoundError):
            os.unlink(osp.join(out_dir, MANIFEST_NAME))
        for name in (*files.values(), tokenizer_dir):
            dst = osp.join(out_dir, name)
            if osp.isdir(dst):
                shutil.rmtree(dst)
            os.replace(osp.join(work, name), dst)
        atomic_write_bytes(json.dumps(manifest, indent=2).encode('utf-8'),
                           osp.join(out_dir, MANIFEST_NAME))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def split_parity(config: Union[str, Config], checkpoint: str, export_dir: str,
                 split: str = 'test', topk: int = 10) -> Dict[str, Any]:
    """Rank a split's gallery with each caption by ``PersonSearcher`` and by
    ``OrtSearcher`` (default cv2 preprocessing), and compare.

    Args:
        config: Config file or Config (with the dataset of ``split``).
        checkpoint: Checkpoint file.
        export_dir: Export folder of this config and checkpoint.
        split: ``'test'`` or ``'val'``.
        topk: Length of the compared ranked lists.

    Returns:
        ``num_queries``, ``num_gallery``, ``topk_identical`` (share of
        identical top-k lists), ``max_abs_diff`` of ``image`` and ``text``
        features, ``torch`` and ``onnx`` metrics (%), ``max_metric_diff``.
    """
    from mdrl_deploy import OrtSearcher
    from mdrl_deploy.ranking import topk_cosine
    from mdrl_plugin.apis import PersonSearcher
    from mdrl_plugin.evaluation.functional import rank_metrics_from_features
    from mdrl_plugin.registry import DATASETS

    if split not in ('test', 'val'):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    torch_s = PersonSearcher(config, checkpoint, progress=False)
    ort_s = OrtSearcher(export_dir, num_threads=1)
    if ort_s.fingerprint.get('checkpoint_sha256') != \
            torch_s.fingerprint['checkpoint_sha256']:
        raise ValueError(f'Export {export_dir!r} was made from another '
                         f'checkpoint than {checkpoint!r}.')
    with DefaultScope.overwrite_default_scope(
            torch_s.cfg.get('default_scope', 'mdrl_plugin')):
        dataset = DATASETS.build(copy.deepcopy(
            torch_s.cfg[f'{split}_dataloader']['dataset']))
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    paths = [info['img_path'] for info in infos]
    texts = [text for info in infos for text in info['texts']]
    query_pids = torch.tensor([int(info['pid']) for info in infos
                               for _ in info['texts']])
    gallery_pids = torch.tensor([int(info['pid']) for info in infos])

    t_img, kept_t, _, skipped = torch_s.encode_images(paths)
    o_img, kept_o, _, _ = ort_s.encode_images(paths)
    if skipped or kept_t != kept_o:
        raise ValueError(f'Unreadable images in the {split} split: {skipped}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t_txt = torch_s.encode_texts(texts)
        o_txt = ort_s.encode_texts(texts)
    t_top, o_top = (topk_cosine(q, g, topk)[1]
                    for q, g in ((t_txt, t_img), (o_txt, o_img)))
    out: Dict[str, Any] = dict(
        split=split, num_queries=len(texts), num_gallery=len(paths),
        max_abs_diff=dict(image=float(np.abs(t_img - o_img).max()),
                          text=float(np.abs(t_txt - o_txt).max())),
        topk=topk, topk_identical=float((t_top == o_top).all(axis=1).mean()))
    for name, q, g in (('torch', t_txt, t_img), ('onnx', o_txt, o_img)):
        out[name] = rank_metrics_from_features(
            torch.from_numpy(q), torch.from_numpy(g), query_pids,
            gallery_pids)
    out['max_metric_diff'] = max(abs(out['torch'][k] - out['onnx'][k])
                                 for k in out['torch'])
    return out

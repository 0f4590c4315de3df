"""A memory-mapped, exact cache of the frozen BERT's token outputs.

``<cache_dir>/<fingerprint>/`` holds ``meta.json`` (what the fingerprint
covers, the numeric mode the features were computed in and their dtype) and
immutable shards ``shard-<id>/`` of four arrays: ``keys.npy`` (uint64 ``[N]``,
sorted hashes of the token-id sequences), ``offsets.npy`` (int64 ``[N + 1]``,
row ranges), ``token_ids.npy`` (int32, checked on every hit, so a hash
collision never serves another caption) and ``features.npy`` (float32
``[sum n_i, D]``, real tokens only). A shard is written in a temp folder
(:func:`~mdrl_plugin.engine.fileio.temp_path`), every file and the folder are
fsynced, then it is renamed; a killed build's temp folder is removed by the
next build. Arrays are opened with ``mmap_mode='r'`` (ranks of a node share
the page cache).
"""
import hashlib
import json
import os
import shutil
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .fileio import atomic_write_bytes, fsync_dir, remove_stale_temps, temp_path

__all__ = ['TextFeatureCache', 'numeric_mode', 'text_cache_fingerprint']

#: Bump when the file layout or the canonical BERT computation changes.
CACHE_FORMAT = 2

#: ``torch.backends`` settings that change BERT's numbers (read where present).
_BACKEND_SETTINGS = (
    'fp32_precision', 'cuda.matmul.fp32_precision', 'cuda.matmul.allow_tf32',
    'cuda.matmul.allow_fp16_reduced_precision_reduction',
    'cuda.matmul.allow_bf16_reduced_precision_reduction',
    'cuda.matmul.allow_fp16_accumulation', 'cuda.flash_sdp_enabled',
    'cuda.mem_efficient_sdp_enabled', 'cuda.math_sdp_enabled',
    'cuda.cudnn_sdp_enabled', 'cuda.fp16_bf16_reduction_math_sdp_allowed',
    'cudnn.enabled', 'cudnn.allow_tf32', 'cudnn.fp32_precision',
    'cudnn.deterministic', 'mkldnn.enabled', 'mkldnn.fp32_precision',
    'mkldnn.matmul.fp32_precision')


def _setting(name: str) -> Optional[str]:
    value = torch.backends
    try:
        for part in name.split('.'):
            value = getattr(value, part)
        return str(value() if callable(value) else value)
    except (AttributeError, RuntimeError):
        return None


def numeric_mode(device) -> Dict[str, Optional[str]]:
    """Every setting that changes a BERT forward's numbers on ``device`` now.

    Args:
        device: Where BERT runs.

    Returns:
        dict of strings: device type and model, torch version, this thread's
        autocast state, deterministic algorithms, matmul precision and the
        ``torch.backends`` switches (TF32, reduced-precision reductions,
        attention kernels, oneDNN).
    """
    device = torch.device(device)
    kind = device.type
    if kind == 'cuda':
        model = f'{torch.cuda.get_device_name(device)} cuda {torch.version.cuda}'
    else:
        model = torch.backends.cpu.get_cpu_capability() if kind == 'cpu' else kind
    mode = dict(device=kind, device_model=model, torch=torch.__version__,
                autocast=str(torch.get_autocast_dtype(kind))
                if torch.is_autocast_enabled(kind) else 'off',
                deterministic=str(torch.are_deterministic_algorithms_enabled()))
    try:
        mode['matmul_precision'] = torch.get_float32_matmul_precision()
    except RuntimeError:  # legacy and new precision APIs mixed
        mode['matmul_precision'] = None
    mode.update((name, _setting(name)) for name in _BACKEND_SETTINGS)
    return mode


def _seq_key(seq: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(
        np.ascontiguousarray(seq, dtype='<i4').tobytes(),
        digest_size=8).digest(), 'little')


def _module_digest(module: torch.nn.Module) -> str:
    # names, dtypes, shapes and values of the state dict
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


def _tokenizer_digest(tokenizer) -> str:
    # a fast tokenizer's pipeline (without the padding / truncation state of
    # its last call, which the ids already reflect) or a slow one's vocabulary,
    # plus the class and simple init options
    backend = getattr(tokenizer, 'backend_tokenizer', None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop('padding', None), spec.pop('truncation', None)
        text = json.dumps(spec, sort_keys=True)
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    options = {k: v for k, v in getattr(tokenizer, 'init_kwargs', {}).items()
               if isinstance(v, (bool, int, float, str)) and 'file' not in k
               and 'path' not in k}
    text += json.dumps([type(tokenizer).__name__, tokenizer.padding_side,
                        sorted(options.items())])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def text_cache_fingerprint(encoder, tokenizer, max_length: int,
                           mode: dict) -> Tuple[str, dict]:
    """Fingerprint of everything a cached feature depends on.

    Args:
        encoder: The ``BertTextEncoder`` (BERT weights and config, its
            canonical ``max_length``).
        tokenizer: The data preprocessor's tokenizer.
        max_length: The data preprocessor's truncation length.
        mode: :func:`numeric_mode` of the forward the cache serves.

    Returns:
        tuple: short hex fingerprint and the dict it hashes.
    """
    parts = dict(
        format=CACHE_FORMAT,
        bert_weights=_module_digest(encoder.bert),
        bert_config=encoder.bert.config.to_json_string(use_diff=False),
        attn_implementation=str(encoder.bert.config._attn_implementation),
        bert_max_length=int(encoder.max_length),
        tokenizer=_tokenizer_digest(tokenizer),
        tokenizer_max_length=int(max_length),
        mode=mode)
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    return digest.hexdigest()[:20], parts


class _Shard:
    """One immutable, memory-mapped shard."""

    def __init__(self, folder: str) -> None:
        load = lambda name: np.load(  # noqa: E731
            os.path.join(folder, name), mmap_mode='r')
        self.keys, self.offsets = load('keys.npy'), load('offsets.npy')
        self.token_ids, self.features = load('token_ids.npy'), load('features.npy')

    def find(self, seq: np.ndarray, key: int) -> Optional[Tuple[int, int]]:
        pos = int(np.searchsorted(self.keys, np.uint64(key)))
        while pos < len(self.keys) and int(self.keys[pos]) == key:
            start, stop = int(self.offsets[pos]), int(self.offsets[pos + 1])
            if stop - start == len(seq) and np.array_equal(
                    self.token_ids[start:stop], seq):
                return start, stop
            pos += 1
        return None


class TextFeatureCache:
    """Read-only view of all shards of one fingerprint.

    Args:
        folder: ``<cache_dir>/<fingerprint>``; may not exist yet (empty cache).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        meta = os.path.join(folder, 'meta.json')
        self.meta = json.load(open(meta)) if os.path.isfile(meta) else {}
        #: numeric mode the features were computed in (None: empty cache)
        self.mode: Optional[dict] = self.meta.get('mode')
        self.dtype = getattr(torch, self.meta.get('feature_dtype', 'float32'))
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        self.shards = [_Shard(os.path.join(folder, n)) for n in names
                       if n.startswith('shard-')]

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self.shards)

    def __deepcopy__(self, memo) -> 'TextFeatureCache':
        return self  # read-only: copies of a model share it

    @property
    def nbytes(self) -> int:
        """Bytes of the feature arrays on disk."""
        return sum(s.features.nbytes for s in self.shards)

    def mismatch(self, device) -> Optional[str]:
        """Why a forward on ``device`` now may not be served (None: it may).

        Args:
            device: Where BERT runs.

        Returns:
            The settings that differ from the cache's numeric mode, or None.
        """
        built = self.mode or {}
        diff = [f'{k}={built.get(k)} in the cache but {v} now'
                for k, v in numeric_mode(device).items() if built.get(k) != v]
        return ', '.join(diff) or None

    def _find(self, seq: np.ndarray) -> Optional[Tuple[_Shard, int, int]]:
        key = _seq_key(seq)
        for shard in self.shards:
            span = shard.find(seq, key)
            if span is not None:
                return shard, span[0], span[1]
        return None

    def gather(self, seqs: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Look up token-id sequences (real tokens only).

        Args:
            seqs: One int array per caption.

        Returns:
            tuple: bool ``[len(seqs)]`` (found) and the found sequences'
            feature rows, concatenated in order (a new float32 array).
        """
        found = np.zeros(len(seqs), dtype=bool)
        parts: List[np.ndarray] = []
        for i, seq in enumerate(seqs):
            hit = self._find(np.asarray(seq))
            if hit is not None:
                found[i] = True
                parts.append(hit[0].features[hit[1]:hit[2]])
        dims = self.shards[0].features.shape[1] if self.shards else 0
        rows = (np.concatenate(parts) if parts else
                np.zeros((0, dims), dtype=np.float32))
        return found, np.array(rows, dtype=np.float32, copy=True)

    def missing(self, seqs: Sequence[Sequence[int]]) -> List[np.ndarray]:
        """Distinct sequences of ``seqs`` that the cache does not hold."""
        out: Dict[bytes, np.ndarray] = {}
        for seq in seqs:
            arr = np.asarray(seq, dtype=np.int32)
            if arr.tobytes() not in out and self._find(arr) is None:
                out[arr.tobytes()] = arr
        return list(out.values())

    @staticmethod
    def write_shard(folder: str, seqs: Sequence[np.ndarray],
                    compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    batch_size: int = 64,
                    device: torch.device = torch.device('cpu'),
                    meta: Optional[dict] = None) -> Optional[str]:
        """Compute and write the features of ``seqs`` as a new shard, in the
        caller's numeric mode (autocast included), which ``meta.json`` records.

        Args:
            folder: ``<cache_dir>/<fingerprint>`` (created).
            seqs: Distinct token-id sequences (int32 arrays).
            compute: ``(input_ids, attention_mask) -> [B, L, D]`` features,
                e.g. ``BertTextEncoder.frozen_bert_tokens``.
            batch_size: Captions per ``compute`` call.
            device: Device of the id tensors.
            meta: More entries of ``meta.json`` (the fingerprint's parts).

        Returns:
            The shard's folder, or None when ``seqs`` is empty.

        Raises:
            ValueError: ``folder`` holds features of another numeric mode.
        """
        if not seqs:
            return None
        meta = dict(meta or {}, mode=numeric_mode(device))
        os.makedirs(folder, exist_ok=True)
        remove_stale_temps(folder)  # of killed builds
        keys = np.array([_seq_key(s) for s in seqs], dtype=np.uint64)
        order = np.argsort(keys, kind='stable')
        seqs = [seqs[i] for i in order]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
        final = os.path.join(folder, f'shard-{uuid.uuid4().hex}')
        tmp = temp_path(final)
        files = [os.path.join(tmp, n + '.npy')
                 for n in ('keys', 'offsets', 'token_ids', 'features')]
        os.makedirs(tmp)
        try:
            for file, array in zip(files, (keys[order], offsets, np.concatenate(
                    seqs).astype(np.int32))):
                np.save(file, array)
            features = None
            for start in range(0, len(seqs), batch_size):
                chunk = seqs[start:start + batch_size]
                ids = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long)
                for row, seq in enumerate(chunk):
                    ids[row, :len(seq)] = torch.from_numpy(seq.astype(np.int64))
                mask = (torch.arange(ids.shape[1])[None] < torch.as_tensor(
                    [len(s) for s in chunk])[:, None]).long()
                out = compute(ids.to(device), mask.to(device))
                meta['feature_dtype'] = str(out.dtype).split('.')[-1]
                if features is None:
                    features = np.lib.format.open_memmap(
                        files[3], mode='w+', dtype=np.float32,
                        shape=(int(offsets[-1]), out.shape[-1]))
                features[offsets[start]:offsets[start + len(chunk)]] = (
                    out.float().cpu()[mask.bool()].numpy())
            features.flush()
            del features
            for file in files:
                fd = os.open(file, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            fsync_dir(tmp)
            old = TextFeatureCache(folder).meta
            if not old:
                atomic_write_bytes(json.dumps(meta, indent=1).encode(),
                                   os.path.join(folder, 'meta.json'))
            elif [old.get(k) for k in ('mode', 'feature_dtype')] != [
                    meta[k] for k in ('mode', 'feature_dtype')]:
                raise ValueError(f'Text cache {folder} holds features of '
                                 'another numeric mode or dtype')
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(folder)
        return final

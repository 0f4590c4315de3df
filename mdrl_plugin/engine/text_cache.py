"""An exact, memory-mapped cache of the frozen BERT's token outputs: per
fingerprint, ``meta.json`` and immutable shards (sorted sequence hashes, row
offsets, token ids checked on every hit, float32 features of the real tokens),
each written in a temp folder, fsynced and renamed. See ``docs/models.md``."""
import hashlib
import json
import os
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from .fileio import (
    atomic_folder,
    atomic_write_bytes,
    remove_stale_temps,
)

#: Bump when the file layout or the canonical BERT computation changes.
CACHE_FORMAT = 2
_ARRAYS = ('keys', 'offsets', 'token_ids', 'features')
_MODE_KEYS = ('mode', 'feature_dtype')
#: ``torch`` settings that change BERT's numbers: matmul precision, TF32 and
#: reduced-precision switches (CUDA, cuDNN, oneDNN), attention kernels
_SETTINGS = tuple('''get_float32_matmul_precision
    are_deterministic_algorithms_enabled
    backends.fp32_precision backends.cuda.matmul.fp32_precision
    backends.cuda.matmul.allow_tf32
    backends.cuda.matmul.allow_fp16_reduced_precision_reduction
    backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    backends.cuda.matmul.allow_fp16_accumulation
    backends.cuda.flash_sdp_enabled backends.cuda.math_sdp_enabled
    backends.cuda.mem_efficient_sdp_enabled backends.cuda.cudnn_sdp_enabled
    backends.cuda.fp16_bf16_reduction_math_sdp_allowed backends.cudnn.enabled
    backends.cudnn.allow_tf32 backends.cudnn.fp32_precision
    backends.cudnn.deterministic backends.mkldnn.enabled
    backends.mkldnn.fp32_precision
    backends.mkldnn.matmul.fp32_precision'''.split())


def _setting(name: str) -> Optional[str]:
    value = torch
    try:
        for part in name.split('.'):
            value = getattr(value, part)
        return str(value() if callable(value) else value)
    except (AttributeError, RuntimeError):  # not in this torch; mixed APIs
        return None


def numeric_mode(device) -> Dict[str, Optional[str]]:
    """Every setting that changes a BERT forward's numbers on ``device`` now,
    as strings (None: not in this torch): device model, torch version, this
    thread's autocast, :data:`_SETTINGS`."""
    device = torch.device(device)
    kind = device.type
    model = (f'{torch.cuda.get_device_name(device)} cuda {torch.version.cuda}'
             if kind == 'cuda' else torch.backends.cpu.get_cpu_capability()
             if kind == 'cpu' else kind)
    autocast = (torch.is_autocast_enabled(kind)
                and torch.get_autocast_dtype(kind))
    return dict(device=kind, device_model=model, torch=torch.__version__,
                autocast=str(autocast or 'off'),
                **{n: _setting(n) for n in _SETTINGS})


def _seq_key(seq: np.ndarray) -> int:
    data = np.ascontiguousarray(seq, dtype='<i4').tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(),
                          'little')


def _module_digest(module: torch.nn.Module) -> str:
    # names, dtypes, shapes and values of the state dict
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


def text_cache_fingerprint(encoder, mode: dict) -> Tuple[str, dict]:
    """Fingerprint of BERT's weights, config, canonical lengths and ``mode``.

    Args:
        encoder: The ``BertTextEncoder``.
        mode: :func:`numeric_mode` of the forwards the cache serves.

    Returns:
        tuple: short hex fingerprint and the dict it hashes.
    """
    parts = dict(
        format=CACHE_FORMAT, bert_weights=_module_digest(encoder.bert),
        bert_config=encoder.bert.config.to_json_string(use_diff=False),
        attn_implementation=str(encoder.bert.config._attn_implementation),
        bert_max_length=int(encoder.max_length), mode=mode,
        pad_to_multiple_of=int(encoder.pad_to_multiple_of))
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode())
    return digest.hexdigest()[:20], parts


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
        self.shards = [[np.load(os.path.join(folder, n, a + '.npy'),
                                mmap_mode='r') for a in _ARRAYS]
                       for n in names if n.startswith('shard-')]
        #: bytes of the feature arrays on disk
        self.nbytes = sum(s[3].nbytes for s in self.shards)

    def __len__(self) -> int:
        return sum(len(keys) for keys, *_ in self.shards)

    def __deepcopy__(self, memo) -> 'TextFeatureCache':
        return self  # read-only: copies of a model share it

    def mismatch(self, device) -> Optional[str]:
        """Why a forward on ``device`` now may not be served (the settings
        unlike the cache's numeric mode), or None when it may."""
        built = self.mode or {}
        return ', '.join(f'{k}={built.get(k)} in the cache but {v} now'
                         for k, v in numeric_mode(device).items()
                         if built.get(k) != v) or None

    def _find(self, seq: np.ndarray) -> Optional[np.ndarray]:
        key = _seq_key(seq)
        for keys, offsets, token_ids, features in self.shards:
            pos = int(np.searchsorted(keys, np.uint64(key)))
            while pos < len(keys) and int(keys[pos]) == key:
                start, stop = int(offsets[pos]), int(offsets[pos + 1])
                if np.array_equal(token_ids[start:stop], seq):
                    return features[start:stop]
                pos += 1
        return None

    def gather(self,
               seqs: Sequence[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """Look up token-id sequences ``seqs`` (real tokens only): a bool
        ``[len(seqs)]`` (found) and the found rows in order."""
        rows = [self._find(np.asarray(seq)) for seq in seqs]
        found = np.array([r is not None for r in rows], dtype=bool)
        dims = self.shards[0][3].shape[1] if self.shards else 0
        empty = np.zeros((0, dims), np.float32)
        return found, np.concatenate([r for r in rows if r is not None] +
                                     [empty])

    def missing(self, seqs: Sequence[Sequence[int]]) -> List[np.ndarray]:
        """Distinct sequences of ``seqs`` that the cache does not hold."""
        arrays = (np.asarray(seq, dtype=np.int32) for seq in seqs)
        distinct = {a.tobytes(): a for a in arrays}.values()
        return [a for a in distinct if self._find(a) is None]

    @staticmethod
    def write_shard(
            folder: str, seqs: Sequence[np.ndarray],
            compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            batch_size: int = 64, device: torch.device = torch.device('cpu'),
            meta: Optional[dict] = None) -> Optional[str]:
        """Compute the features of ``seqs`` in the caller's numeric mode and
        write them as a new shard (ValueError if ``folder`` holds another's).

        Args:
            folder: ``<cache_dir>/<fingerprint>`` (created).
            seqs: Distinct token-id sequences (int32 arrays).
            compute: ``(ids, mask) -> [B, L, D]``, e.g. ``frozen_bert_tokens``.
            batch_size: Captions per ``compute`` call.
            device: Device of the id tensors.
            meta: More entries of ``meta.json`` (the fingerprint's parts).

        Returns:
            The shard's folder, or None when ``seqs`` is empty.
        """
        if not seqs:
            return None
        meta = dict(meta or {}, mode=numeric_mode(device))
        remove_stale_temps(folder)  # of killed builds
        keys = np.array([_seq_key(s) for s in seqs], dtype=np.uint64)
        seqs = [seqs[i] for i in np.argsort(keys, kind='stable')]
        offsets = np.cumsum([0] + [len(s) for s in seqs])
        final = os.path.join(folder, f'shard-{uuid.uuid4().hex}')
        os.makedirs(folder, exist_ok=True)
        with atomic_folder(final) as tmp:
            files = [os.path.join(tmp, a + '.npy') for a in _ARRAYS]
            token_ids = np.concatenate(seqs).astype(np.int32)
            for file, array in zip(files, (np.sort(keys), offsets, token_ids)):
                np.save(file, array)
            features = None
            for start in range(0, len(seqs), batch_size):
                chunk = seqs[start:start + batch_size]
                ids = [torch.from_numpy(s.astype(np.int64)) for s in chunk]
                mask = pad_sequence([torch.ones_like(i) for i in ids], True)
                ids = pad_sequence(ids, True)
                out = compute(ids.to(device), mask.to(device))
                meta['feature_dtype'] = str(out.dtype).split('.')[-1]
                if features is None:
                    features = np.lib.format.open_memmap(
                        files[3], 'w+', np.float32,
                        (int(offsets[-1]), out.shape[-1]))
                features[offsets[start]:offsets[start + len(chunk)]] = (
                    out.float().cpu()[mask.bool()].numpy())
            features.flush()
            del features
            old = TextFeatureCache(folder).meta
            if old and ([old[k] for k in _MODE_KEYS] !=
                        [meta[k] for k in _MODE_KEYS]):
                raise ValueError(f'Text cache {folder} holds features of '
                                 'another numeric mode or dtype')
            if not old:
                atomic_write_bytes(json.dumps(meta, indent=1).encode(),
                                   os.path.join(folder, 'meta.json'))
        return final

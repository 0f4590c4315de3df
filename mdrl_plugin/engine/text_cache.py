"""A memory-mapped, exact cache of the frozen BERT's token outputs.

Layout on disk: ``<cache_dir>/<fingerprint>/shard-<id>/`` holds

* ``keys.npy``: uint64 ``[N]``, sorted 64-bit hashes of the token-id sequences;
* ``offsets.npy``: int64 ``[N + 1]``, row ranges of entry ``i`` in the arrays below;
* ``token_ids.npy``: int32 ``[sum n_i]``, the token ids (checked on every hit,
  so a hash collision can never serve another caption's features);
* ``features.npy``: float32 ``[sum n_i, D]``, BERT's outputs at the real tokens
  only (no padding).

A shard is written under a temporary name and renamed when complete, and never
changes afterwards; later builds add shards for the sequences not yet cached.
All arrays are opened with ``mmap_mode='r'``: ranks on one node share the
pages of the operating system's file cache, so memory per node does not grow
with the number of ranks. ``meta.json`` records what the fingerprint covers.
"""
import hashlib
import json
import os
import uuid
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['TextFeatureCache', 'text_cache_fingerprint', 'tokenizer_digest',
           'module_digest']

#: Bump when the file layout or the canonical BERT computation changes.
CACHE_FORMAT = 1


def _seq_key(seq: np.ndarray) -> int:
    return int.from_bytes(hashlib.blake2b(
        np.ascontiguousarray(seq, dtype='<i4').tobytes(),
        digest_size=8).digest(), 'little')


def module_digest(module: torch.nn.Module) -> str:
    """Hash of a module's state dict (names, dtypes, shapes and values).

    Args:
        module: The module (e.g. the BERT).

    Returns:
        Hex digest.
    """
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f'{name}|{t.dtype}|{tuple(t.shape)}|'.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b'')
    return h.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """Hash of a Hugging Face tokenizer's full definition.

    Fast tokenizers serialise their pipeline (vocabulary, normaliser,
    pre-tokeniser, post-processor; not the padding / truncation settings of
    the last call, which the ids given to the cache already reflect); slow
    ones hash their vocabulary. Both add the class and simple init options.

    Args:
        tokenizer: The tokenizer.

    Returns:
        Hex digest.
    """
    backend = getattr(tokenizer, 'backend_tokenizer', None)
    if backend is not None:
        # without the call-time padding / truncation state the tokenizer keeps
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
                           device: torch.device) -> Tuple[str, dict]:
    """Fingerprint of everything a cached feature depends on.

    Args:
        encoder: The ``BertTextEncoder`` (its BERT weights and config, and its
            canonical ``max_length``).
        tokenizer: The data preprocessor's tokenizer.
        max_length: The data preprocessor's truncation length.
        device: Where BERT runs (kernels differ between device types).

    Returns:
        tuple: short hex fingerprint and the dict it hashes.
    """
    parts = dict(
        format=CACHE_FORMAT,
        bert_weights=module_digest(encoder.bert),
        bert_config=encoder.bert.config.to_json_string(use_diff=False),
        attn_implementation=str(encoder.bert.config._attn_implementation),
        bert_max_length=int(encoder.max_length),
        tokenizer=tokenizer_digest(tokenizer),
        tokenizer_max_length=int(max_length),
        dtype='float32',
        torch=torch.__version__,
        device=torch.device(device).type)
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
                    device: torch.device = torch.device('cpu')) -> Optional[str]:
        """Compute and write the features of ``seqs`` as a new shard.

        Args:
            folder: ``<cache_dir>/<fingerprint>`` (created).
            seqs: Distinct token-id sequences (int32 arrays).
            compute: ``(input_ids, attention_mask) -> [B, L, D]`` features,
                e.g. ``BertTextEncoder.frozen_bert_tokens``.
            batch_size: Captions per ``compute`` call.
            device: Device of the id tensors.

        Returns:
            The shard's folder, or None when ``seqs`` is empty.
        """
        if not seqs:
            return None
        os.makedirs(folder, exist_ok=True)
        keys = np.array([_seq_key(s) for s in seqs], dtype=np.uint64)
        order = np.argsort(keys, kind='stable')
        seqs = [seqs[i] for i in order]
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tmp = os.path.join(folder, f'.tmp-{uuid.uuid4().hex}')
        os.makedirs(tmp)
        np.save(os.path.join(tmp, 'keys.npy'), keys[order])
        np.save(os.path.join(tmp, 'offsets.npy'), offsets)
        np.save(os.path.join(tmp, 'token_ids.npy'), np.concatenate(seqs).astype(np.int32))
        features = None
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start:start + batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, seq in enumerate(chunk):
                ids[row, :len(seq)] = torch.from_numpy(seq.astype(np.int64))
            mask = (torch.arange(width)[None] < torch.as_tensor(
                [len(s) for s in chunk])[:, None]).long()
            out = compute(ids.to(device), mask.to(device)).float().cpu()
            if features is None:
                features = np.lib.format.open_memmap(
                    os.path.join(tmp, 'features.npy'), mode='w+',
                    dtype=np.float32, shape=(int(offsets[-1]), out.shape[-1]))
            features[offsets[start]:offsets[start + len(chunk)]] = (
                out[mask.bool()].numpy())
        features.flush()
        del features
        final = os.path.join(folder, 'shard-' + tmp.rsplit('-', 1)[1])
        os.rename(tmp, final)
        return final

"""Text-to-image person search with the exported ONNX graphs, without torch.

:class:`OrtSearcher` is the torch-free twin of
:class:`mdrl_plugin.apis.PersonSearcher`: it needs ``onnxruntime``,
``tokenizers``, NumPy and Pillow (OpenCV when installed, for bit-exact image
resizing) and brings only the encoders; index building, labels, index files
and ranking are :class:`~mdrl_deploy.search.GallerySearcher`'s, shared with
``PersonSearcher``.
"""
import os.path as osp
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .index import file_stat
from .manifest import load_manifest
from .preprocess import ImagePreprocessor, TextTokenizer
from .search import GallerySearcher, skip_reason

__all__ = ['OrtSearcher']


class OrtSearcher(GallerySearcher):
    """Search a gallery with an export folder and ONNX Runtime.

    Example::

        searcher = OrtSearcher('export/')
        searcher.build_index('photos/')
        for hit in searcher.search('a woman in a red coat', topk=5)[0]:
            print(hit.rank, hit.score, hit.path)

    Args:
        export_dir: Folder written by ``tools/export.py``.
        batch_size: Images encoded per run of the image graph.
        num_threads: ONNX Runtime intra-op threads (None: its default).
            They sleep between runs instead of spinning: a search
            alternates the text graph with NumPy's ranking, whose BLAS
            threads spinning ONNX Runtime threads would slow down.
        image_backend: ``'cv2'`` (exact), ``'pillow'`` or None (cv2 when
            installed), see :class:`~mdrl_deploy.preprocess.ImagePreprocessor`.
        providers: ONNX Runtime execution providers (default CPU).
        progress: Print encoding progress to stderr.
    """

    encoder_name = 'onnxruntime'

    def __init__(self,
                 export_dir: str,
                 batch_size: int = 64,
                 num_threads: Optional[int] = None,
                 image_backend: Optional[str] = None,
                 providers: Optional[Sequence[str]] = None,
                 progress: bool = False) -> None:
        import onnxruntime as ort
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}')
        self.manifest = load_manifest(export_dir)
        self.export_dir = osp.abspath(export_dir)
        files = self.manifest['files']
        opts = ort.SessionOptions()
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if num_threads is not None:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        providers = list(providers or ['CPUExecutionProvider'])
        self.image_session = ort.InferenceSession(files['image'], opts,
                                                  providers=providers)
        self.text_session = ort.InferenceSession(files['text'], opts,
                                                 providers=providers)
        img = self.manifest['image']
        self.preprocessor = ImagePreprocessor(
            img['height'], img['width'], img['mean'], img['std'],
            img['channel_order'], backend=image_backend)
        txt = self.manifest['text']
        self.tokenizer = TextTokenizer(files['tokenizer'], txt['max_length'],
                                       txt.get('pad_token_id', 0))
        self.max_length = int(txt['max_length'])
        feature = self.manifest['feature']
        self.feature_dim = int(feature['dim'])
        groups = feature.get('num_groups')
        self.global_dim = self.feature_dim // (int(groups) + 1) \
            if feature['layout'] == 'global+local' and groups else None
        self.fingerprint: Dict[str, Any] = dict(self.manifest['fingerprint'])
        self.batch_size = int(batch_size)
        self.progress = progress
        self.index = None

    # ------------------------------------------------------------ encoding
    def encode_image_arrays(self, images: np.ndarray) -> np.ndarray:
        """Features ``float32 [B, D]`` of normalised ``[B, 3, H, W]`` images."""
        return self.image_session.run(
            None, {'images': np.ascontiguousarray(images, np.float32)})[0]

    def encode_images(self, paths: Sequence[str]
                      ) -> Tuple[np.ndarray, List[int], List[Tuple[int, int]],
                                 List[Tuple[str, str]]]:
        """:meth:`GallerySearcher.encode_images` with
        :class:`~mdrl_deploy.preprocess.ImagePreprocessor` and the image
        graph."""
        feats, kept, stats, skipped = [], [], [], []
        for start in range(0, len(paths), self.batch_size):
            arrays, idx = [], []
            for i in range(start, min(start + self.batch_size, len(paths))):
                try:
                    stat = file_stat(paths[i])
                    arrays.append(self.preprocessor([paths[i]])[0])
                except Exception as err:  # decoders raise many types
                    skipped.append((paths[i], skip_reason(err)))
                    continue
                idx.append(i)
                stats.append(stat)
            if arrays:
                feats.append(self.encode_image_arrays(np.stack(arrays)))
                kept.extend(idx)
            if self.progress:
                print(f'\rencoded {min(start + self.batch_size, len(paths))}'
                      f'/{len(paths)} images', end='', file=sys.stderr)
        if self.progress and paths:
            print(file=sys.stderr)
        features = (np.concatenate(feats) if feats else
                    np.zeros((0, self.feature_dim), np.float32))
        return features.astype(np.float32), kept, stats, skipped

    def _token_lengths(self, texts: List[str]) -> List[int]:
        return self.tokenizer.lengths(texts)

    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        return self.text_session.run(None, self.tokenizer(texts))[0]

    def encode_texts(self, texts) -> np.ndarray:
        """L2-normalised query features ``float32 [T, D]``.

        A query longer than ``max_length`` tokens is truncated with a
        :class:`~mdrl_deploy.search.QueryTruncatedWarning`.

        Raises:
            ValueError: If there is no query or one is empty.
        """
        return self.encode_queries(texts)

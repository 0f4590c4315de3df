"""Person search with the exported ONNX graphs, without torch: the encoders
of a :class:`~.search.GallerySearcher`."""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .manifest import load_manifest
from .preprocess import ImagePreprocessor, TextTokenizer
from .search import GallerySearcher


class OrtSearcher(GallerySearcher):
    """Search a gallery with an export folder and ONNX Runtime.

    Example::

        searcher = OrtSearcher('export/')
        searcher.build_index('photos/')
        hits = searcher.search('a woman in a red coat', topk=5)[0]

    Args:
        export_dir: Folder written by ``tools/export.py``.
        batch_size: Images encoded per run of the image graph.
        num_workers: Threads that read gallery images (0: none).
        num_threads: ONNX Runtime intra-op threads (None: default), idle
            between runs (not spinning: NumPy ranks then).
        image_backend: :class:`~.preprocess.ImagePreprocessor`'s ``backend``.
        providers: ONNX Runtime execution providers (default CPU).
        progress: Print encoding progress to stderr.
    """

    encoder_name = 'onnxruntime'

    def __init__(self,
                 export_dir: str,
                 batch_size: int = 64,
                 num_workers: int = 0,
                 num_threads: Optional[int] = None,
                 image_backend: Optional[str] = None,
                 providers: Optional[Sequence[str]] = None,
                 progress: bool = False) -> None:
        import onnxruntime as ort
        self._set_encoding(batch_size, num_workers, progress)
        self.manifest = load_manifest(export_dir)
        self.export_dir = osp.abspath(export_dir)
        files = self.manifest['files']
        opts = ort.SessionOptions()
        opts.add_session_config_entry('session.intra_op.allow_spinning', '0')
        if num_threads is not None:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        providers = list(providers or ['CPUExecutionProvider'])
        self.image_session, self.text_session = (
            ort.InferenceSession(files[k], opts, providers=providers)
            for k in ('image', 'text'))
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

    # ------------------------------------------------------------ encoders
    def _read_image(self, path: str) -> np.ndarray:
        return self.preprocessor([path])[0]

    def _encode_images(self, images: List[np.ndarray]) -> np.ndarray:
        return self.image_session.run(None, {'images': np.stack(images)})[0]

    def _token_lengths(self, texts: List[str]) -> List[int]:
        return self.tokenizer.lengths(texts)

    def _encode_texts(self, texts: List[str]) -> np.ndarray:
        return self.text_session.run(None, self.tokenizer(texts))[0]

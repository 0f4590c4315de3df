"""Parity of an export with PyTorch on a dataset split."""
import copy
import warnings
from typing import Any, Dict, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

__all__ = ['split_parity']


def split_parity(config: Union[str, Config], checkpoint: str, export_dir: str,
                 split: str = 'test', topk: int = 10) -> Dict[str, Any]:
    """Rank a dataset split with PyTorch and with the export; compare.

    Every caption of ``{split}_dataloader.dataset`` ranks its gallery, with
    :class:`~mdrl_plugin.apis.PersonSearcher` and with
    :class:`~mdrl_deploy.OrtSearcher` (default cv2 preprocessing).

    Args:
        config: Config file or Config (with the dataset of ``split``).
        checkpoint: Checkpoint file.
        export_dir: Export folder of this config and checkpoint.
        split: ``'test'`` or ``'val'``.
        topk: Length of the compared ranked lists.

    Returns:
        ``num_queries``, ``num_gallery``, ``topk_identical`` (share of
        queries with identical top-k lists), ``max_abs_diff`` (``image`` and
        ``text`` features), ``torch`` and ``onnx`` metrics (R1, R5, R10,
        mAP, mINP in %) and ``max_metric_diff`` (points).
    """
    from mdrl_deploy import OrtSearcher
    from mdrl_deploy.ranking import topk_cosine
    from mdrl_plugin.apis import PersonSearcher
    from mdrl_plugin.evaluation.functional import rank_metrics_from_features
    from mdrl_plugin.registry import DATASETS

    if split not in ('test', 'val'):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    torch_s = PersonSearcher(cfg, checkpoint, progress=False)
    ort_s = OrtSearcher(export_dir, num_threads=1)
    if ort_s.fingerprint.get('checkpoint_sha256') != \
            torch_s.fingerprint['checkpoint_sha256']:
        raise ValueError(f'Export {export_dir!r} was made from another '
                         f'checkpoint than {checkpoint!r}.')
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mdrl_plugin')):
        dataset = DATASETS.build(copy.deepcopy(
            cfg[f'{split}_dataloader']['dataset']))
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    paths = [info['img_path'] for info in infos]
    gallery_pids = torch.tensor([int(info['pid']) for info in infos])
    texts, query_pids = [], []
    for info in infos:
        texts.extend(info['texts'])
        query_pids.extend([int(info['pid'])] * len(info['texts']))
    query_pids = torch.tensor(query_pids)

    t_img, kept_t, _, skipped = torch_s.encode_images(paths)
    o_img, kept_o, _, _ = ort_s.encode_images(paths)
    if skipped or kept_t != kept_o:
        raise ValueError(f'Unreadable images in the {split} split: {skipped}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        t_txt = torch_s.encode_texts(texts)
        o_txt = ort_s.encode_texts(texts)
    out: Dict[str, Any] = dict(
        split=split, num_queries=len(texts), num_gallery=len(paths),
        max_abs_diff=dict(image=float(np.abs(t_img - o_img).max()),
                          text=float(np.abs(t_txt - o_txt).max())))
    _, t_top = topk_cosine(t_txt, t_img, topk)
    _, o_top = topk_cosine(o_txt, o_img, topk)
    out['topk'] = topk
    out['topk_identical'] = float((t_top == o_top).all(axis=1).mean())
    for name, q, g in (('torch', t_txt, t_img), ('onnx', o_txt, o_img)):
        out[name] = rank_metrics_from_features(
            torch.from_numpy(q), torch.from_numpy(g), query_pids,
            gallery_pids)
    out['max_metric_diff'] = max(abs(out['torch'][k] - out['onnx'][k])
                                 for k in out['torch'])
    return out

"""Shared base class of the text-based person search (PEDES-style) datasets."""
import copy
import os.path as osp
from collections import Counter
from typing import Callable, List, Mapping, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset, force_full_init

from mdrl_deploy.utils import first_n
from mdrl_plugin.registry import DATASETS, TRANSFORMS

from .annotation import (
    PedesRecord,
    check_data_root,
    find_annotation_file,
    find_missing_files,
    format_problems,
    group_images,
    load_annotation_json,
    parse_pedes_records,
)
from .errors import AnnotationFormatError, EmptySplitError, MissingImagesError

__all__ = ['BasePedesDataset']


@DATASETS.register_module()
class BasePedesDataset(BaseDataset):
    """A dataset of pedestrian images with natural-language captions.

    Reads a JSON list of records ``{"split", "id", "file_path" | "img_path",
    "captions"}`` (the CUHK-PEDES, ICFG-PEDES and RSTPReid layout) and the
    images under ``<data_root>/imgs``; usable directly for any dataset in
    that layout by giving ``ann_file``. Records naming the same image are
    merged; paths are normalised (:func:`.normalize_image_path`).

    Training entries (one per caption): ``dict(img_path, text, gt_label,
    image_id, pid)`` with ``gt_label`` contiguous over the split's sorted raw
    ids ``pid`` and ``image_id`` in file order. Evaluation entries (one per
    image, every caption a query): ``dict(img_path, texts, pid, image_id)``.
    See docs/datasets.md.

    Args:
        data_root: The dataset folder, holding ``imgs/`` and the JSON file.
        split: One of ``ALLOWED_SPLITS``.
        ann_file: Annotation file (relative to ``data_root`` or absolute);
            None tries ``DEFAULT_ANN_FILES``.
        pipeline: Transforms (config dicts or callables).
        test_mode: None: training entries for ``'train'``, evaluation
            entries otherwise; True/False force one layout.
        data_prefix: ``dict(img_path=<image folder>)``.
        check_files: Check that the split's images exist (off for storage
            without a local file system).
        metainfo: Extra meta information merged into :attr:`metainfo`.
        indices: See ``BaseDataset``.
        serialize_data: See ``BaseDataset``.
        lazy_init: Defer reading the annotation to ``full_init()``.
        max_refetch: See ``BaseDataset``.
        filter_cfg: Unused; kept for ``BaseDataset``.

    Raises:
        DatasetNotFoundError: ``data_root`` does not exist.
        AnnotationNotFoundError: No annotation file (names tried listed).
        AnnotationFormatError: Malformed JSON or records.
        MissingImagesError: Image files of the split do not exist.
        EmptySplitError: The split has no records.
        ValueError: Unknown ``split``.
    """

    #: Shown in messages and reported as ``metainfo['dataset_name']``.
    METAINFO: dict = dict(dataset_name='PEDES')
    #: Annotation file names tried in order when ``ann_file`` is None.
    DEFAULT_ANN_FILES: Sequence[str] = ()
    #: Split values this dataset has (and that records may carry).
    ALLOWED_SPLITS: Sequence[str] = ('train', 'val', 'test')

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 ann_file: Optional[str] = None,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: Optional[bool] = None,
                 data_prefix: Optional[dict] = None,
                 check_files: bool = True,
                 metainfo: Optional[dict] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 serialize_data: bool = True,
                 lazy_init: bool = False,
                 max_refetch: int = 1000,
                 filter_cfg: Optional[dict] = None) -> None:
        name = self._dataset_name(metainfo)
        self._check_split(split, name)
        check_data_root(data_root, name)
        if data_prefix is None:
            data_prefix = dict(img_path='imgs')
        if set(data_prefix) != {'img_path'}:
            raise ValueError(
                f'{name}: data_prefix must be dict(img_path=<image folder>), '
                f'got keys {sorted(data_prefix)}.')
        self.split = split
        self.check_files = check_files
        self._img_dir_name = osp.basename(
            osp.normpath(data_prefix['img_path'])) if \
            data_prefix['img_path'] else ''
        resolved = find_annotation_file(data_root, self.DEFAULT_ANN_FILES,
                                        ann_file, name)
        super().__init__(
            ann_file=osp.abspath(resolved), metainfo=metainfo,
            data_root=data_root, data_prefix=data_prefix,
            filter_cfg=filter_cfg, indices=indices,
            serialize_data=serialize_data,
            pipeline=[TRANSFORMS.build(t) if isinstance(t, dict) else t
                      for t in pipeline],
            test_mode=split != 'train' if test_mode is None else
            bool(test_mode),
            lazy_init=lazy_init, max_refetch=max_refetch)
        self._metainfo.update(split=split, ann_file=self.ann_file)

    @classmethod
    def _load_metainfo(cls, metainfo: Optional[Mapping] = None) -> dict:
        """``METAINFO`` updated with ``metainfo`` as given (``BaseDataset``
        would read every string value as a file name and warn)."""
        if metainfo is not None and not isinstance(metainfo, Mapping):
            raise TypeError(
                f'{cls.__name__}: metainfo must be a dict, got '
                f'{type(metainfo).__name__}.')
        return copy.deepcopy({**cls.METAINFO, **(metainfo or {})})

    @classmethod
    def _dataset_name(cls, metainfo: Optional[dict] = None) -> str:
        if metainfo and 'dataset_name' in metainfo:
            return str(metainfo['dataset_name'])
        return cls.METAINFO.get('dataset_name', cls.__name__)

    @classmethod
    def _check_split(cls, split: str, name: str) -> None:
        if split not in cls.ALLOWED_SPLITS:
            raise ValueError(
                f'{name}: unknown split {split!r}; allowed: '
                f'{", ".join(repr(s) for s in cls.ALLOWED_SPLITS)}.')

    @property
    def dataset_name(self) -> str:
        """The dataset's display name (``metainfo['dataset_name']``)."""
        return self._metainfo['dataset_name']

    @property
    def img_dir(self) -> str:
        """The image folder (``data_root`` joined with ``data_prefix``)."""
        return self.data_prefix['img_path']

    def load_data_list(self) -> List[dict]:
        """Read, validate and expand the annotation file.

        Returns:
            The entries of the split (training or evaluation layout).
        """
        raw = load_annotation_json(self.ann_file)
        records, problems = parse_pedes_records(raw, self.ALLOWED_SPLITS,
                                                self._img_dir_name)
        counts = Counter(r.split for r in records)
        images, conflicts = group_images(self._select_records(records))
        problems += conflicts
        if problems:
            raise AnnotationFormatError(
                f'{self.ann_file}: {len(problems)} invalid record(s) in '
                f'{self.dataset_name}:\n{format_problems(problems)}')
        if not images:
            found = ', '.join(f'{k}={v}' for k, v in counts.items()) or \
                'no valid records at all'
            raise EmptySplitError(
                f'{self.ann_file}: no records with split {self.split!r} '
                f'(records per split: {found}).')
        img_paths = [osp.join(self.img_dir, img.path) for img in images]
        if self.check_files:
            self._check_images_exist(img_paths)

        label_of = {pid: i for i, pid in enumerate(
            sorted({img.pid for img in images}))}
        data_list: List[dict] = []
        for image_id, (img, path) in enumerate(zip(images, img_paths)):
            if self.test_mode:
                data_list.append(
                    dict(img_path=path, texts=list(img.captions),
                         pid=img.pid, image_id=image_id))
            else:
                data_list += [
                    dict(img_path=path, text=text,
                         gt_label=label_of[img.pid], image_id=image_id,
                         pid=img.pid) for text in img.captions]
        self._metainfo.update(
            num_classes=len(label_of), num_identities=len(label_of),
            num_images=len(images),
            num_captions=sum(len(img.captions) for img in images))
        return data_list

    def _select_records(self,
                        records: List[PedesRecord]) -> List[PedesRecord]:
        """The records (of all the valid ones, in file order) whose images
        make up :attr:`split`; subclasses may re-split."""
        return [r for r in records if r.split == self.split]

    def _check_images_exist(self, img_paths: List[str]) -> None:
        missing = find_missing_files(img_paths)
        if not missing:
            return
        name = self.dataset_name
        if not osp.isdir(self.img_dir):
            raise MissingImagesError(
                f'{name}: image folder {self.img_dir!r} does not exist; '
                f'{self.ann_file} lists {len(img_paths)} images of split '
                f'{self.split!r} under it.')
        shown = first_n([
            osp.relpath(p, self.img_dir) if p.startswith(self.img_dir) else p
            for p in missing])
        raise MissingImagesError(
            f'{name}: {len(missing)} of {len(img_paths)} images of split '
            f'{self.split!r} listed in {self.ann_file} do not exist under '
            f'{self.img_dir!r}; first missing: {shown}')

    @force_full_init
    def get_gt_labels(self) -> np.ndarray:
        """Identity labels (int64) of all entries, without the pipeline.

        Raises:
            ValueError: The entries are evaluation entries (no labels).
        """
        if self.test_mode:
            raise ValueError(
                f'{self.dataset_name} (split {self.split!r}) holds evaluation '
                f'entries, which have no gt_label; build it with '
                f'test_mode=False for identity labels.')
        return np.fromiter(
            (self.get_data_info(i)['gt_label'] for i in range(len(self))),
            dtype=np.int64, count=len(self))

    def get_cat_ids(self, idx: int) -> List[int]:
        """``[gt_label]`` of training entry ``idx`` or ``[pid]`` of an
        evaluation entry (for ``ClassBalancedDataset``)."""
        info = self.get_data_info(idx)
        return [info['gt_label'] if 'gt_label' in info else info['pid']]

    def __repr__(self) -> str:
        """A summary: name, split, entry layout, counts and paths."""
        layout = 'evaluation' if self.test_mode else 'training'
        meta = self._metainfo
        counts = (f'num_entries={len(self)}, num_identities='
                  f'{meta["num_identities"]}, num_images={meta["num_images"]}'
                  f', num_captions={meta["num_captions"]},'
                  if self._fully_initialized else '(not fully initialised),')
        return '\n'.join([
            f'{type(self).__name__}(',
            f'    dataset_name={self.dataset_name!r}, split={self.split!r}, '
            f'entries={layout},', f'    {counts}',
            f'    ann_file={self.ann_file!r}, img_dir={self.img_dir!r},',
            f'    pipeline={self.pipeline!r})'])

"""Pretrained weights: local paths, Hugging Face ids, timm tags and URLs."""
import fnmatch
import inspect
import os
import os.path as osp
import socket
from contextlib import suppress
from dataclasses import dataclass
from typing import Iterator, List, Optional
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import HFValidationError, validate_repo_id
from mmengine.logging import print_log
from timm import list_pretrained
from timm.models import get_pretrained_cfg, is_model, split_model_name_tag
from torch.hub import download_url_to_file, get_dir

__all__ = ['WeightsNotFoundError', 'WeightSource', 'hf_source',
           'image_source', 'find_weights', 'check_weights']

# component type: (field naming its weights, role, field naming its timm arch)
_WEIGHT_FIELDS = {
    'TextImageDataPreprocessor': ('tokenizer', 'tokenizer', None),
    'BertTextEncoder': ('pretrained', 'text encoder', None),
    'TimmVisionTransformer': ('pretrained', 'image encoder', 'arch'),
    'TimmCNNEncoder': ('pretrained', 'image encoder', 'arch'),
    'BackboneAdapter': ('timm_checkpoint', 'image encoder', 'timm_model'),
}
_TIMM_FILES = ('model.safetensors', 'pytorch_model.bin')  # in timm's order


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not local, not cached and cannot be fetched."""


def _cached(repo_id: str, *filenames: str) -> Optional[str]:
    """The first of ``filenames`` in the hub cache, with no network."""
    paths = (try_to_load_from_cache(repo_id, name) for name in filenames)
    return next((path for path in paths if isinstance(path, str)), None)


@dataclass
class WeightSource:
    """A pretrained weight at ``key`` of a config (path, hf, timm or url)."""
    role: str
    name: str
    kind: str
    key: str = ''
    repo_id: Optional[str] = None
    url: Optional[str] = None

    def locate(self) -> Optional[str]:
        """The local copy (an ``'hf'`` snapshot folder), with no network."""
        if self.kind in ('path', 'url'):
            path = self.cache_path() if self.url else self.name
            return path if osp.exists(path) else None
        if self.kind == 'timm':
            return _cached(self.repo_id, *_TIMM_FILES)
        from transformers import AutoTokenizer, utils
        folder = osp.dirname(_cached(self.repo_id, utils.CONFIG_NAME) or '')
        if folder and self.role == 'tokenizer':
            try:  # transformers knows which files its tokenizer needs
                AutoTokenizer.from_pretrained(folder, local_files_only=True)
            except (OSError, ValueError):
                return None
        elif folder and not _cached(
                self.repo_id, utils.SAFE_WEIGHTS_NAME, utils.WEIGHTS_NAME,
                utils.SAFE_WEIGHTS_INDEX_NAME, utils.WEIGHTS_INDEX_NAME):
            return None
        return folder or None

    def cache_path(self) -> str:
        """Where a download goes."""
        if self.url:
            return osp.join(get_dir(), 'checkpoints',
                            osp.basename(urlparse(self.url).path))
        return osp.join(constants.HF_HUB_CACHE, repo_folder_name(
            repo_id=self.repo_id, repo_type='model'))

    def fetch(self) -> str:
        """Download into the cache and return :meth:`locate`."""
        from huggingface_hub import HfApi, snapshot_download
        wait = constants.HF_HUB_ETAG_TIMEOUT
        if self.url:
            url = urlparse(self.url)
            if url.hostname:  # torch.hub waits with no time limit: look first
                socket.create_connection((url.hostname, url.port or (
                    443 if url.scheme == 'https' else 80)), wait).close()
            os.makedirs(osp.dirname(self.cache_path()), exist_ok=True)
            download_url_to_file(self.url, self.cache_path())
        else:  # a time limit, which snapshot_download's own look-up lacks
            names = [s.rfilename for s in HfApi().model_info(
                self.repo_id, timeout=wait).siblings]
            patterns = ['*.json', '*.txt', '*.model']  # configs, vocabularies
            if self.kind == 'timm':
                patterns = [f for f in _TIMM_FILES if f in names][:1]
            elif self.role != 'tokenizer':  # the weights, in one format
                safe = fnmatch.filter(names, 'model*.safetensors')
                patterns.append('model*.safetensors' if safe else
                                'pytorch_model*')
            snapshot_download(self.repo_id, allow_patterns=patterns)
        if (path := self.locate()) is None:
            raise FileNotFoundError(f'{self.name!r}: the download brought '
                                    'none of the files looked for')
        return path

    def resolve(self) -> str:
        """:meth:`locate`, else :meth:`fetch`, else WeightsNotFoundError."""
        return _ensure([self])[0]


def hf_source(name: str, role: str = 'text encoder',
              key: str = '') -> WeightSource:
    """An existing path, else a valid Hugging Face id, else a missing path."""
    with suppress(HFValidationError):  # raised by an invalid id
        if not osp.exists(name):
            validate_repo_id(name)
            return WeightSource(role, name, 'hf', key, repo_id=name)
    return WeightSource(role, name, 'path', key)


def image_source(name: str, arch: str, role: str = 'image encoder',
                 key: str = '') -> WeightSource:
    """A timm encoder's weights field: a file, an ``http(s)`` URL, or a tag
    of ``arch`` (``'timm'``: its default); else a ValueError saying why."""
    model, tag = split_model_name_tag(name)
    if name.startswith(('http://', 'https://')) and not osp.exists(name):
        return WeightSource(role, name, 'url', key, url=name)
    if osp.exists(name) or name != 'timm' and (
            '/' in name or not tag or not is_model(model)):
        return WeightSource(role, name, 'path', key)
    what, arch_name = key or role, split_model_name_tag(arch or '')[0]
    if not arch or name != 'timm' and model != arch_name:
        raise ValueError(f'{what}: {name!r} is a timm tag of {model!r}, but '
                         f'the architecture is {arch!r}')
    try:
        cfg = get_pretrained_cfg(arch if name == 'timm' else name)
    except RuntimeError as err:  # an unknown tag
        raise ValueError(f'{what}: {err} Known tags: '
                         f'{", ".join(list_pretrained(arch_name + ".*"))}')
    if cfg and cfg.hf_hub_id:
        return WeightSource(role, name, 'timm', key,
                            cfg.hf_hub_id.split('@')[0])
    if cfg and cfg.url:
        return WeightSource(role, name, 'url', key, url=cfg.url)
    raise ValueError(f'{what}: timm has no downloadable weights for {name!r}')


def find_weights(cfg) -> List[WeightSource]:
    """The weights ``cfg.model`` names (``_WEIGHT_FIELDS``, Pretrained)."""
    from mdrl_plugin.registry import MODELS

    def visit(node, key: str) -> Iterator[WeightSource]:
        if isinstance(node, (list, tuple)):  # keys as --cfg-options: a.0.b
            node = dict(enumerate(node))
        if not isinstance(node, dict):
            return
        kind = node.get('type')  # a class, or a (scoped) registered name
        kind = getattr(kind, '__name__', str(kind).split('.')[-1])
        field, role, arch_field = _WEIGHT_FIELDS.get(kind, (None, ) * 3)
        value, where = node.get(field), f'{key}.{field}'
        if isinstance(value, str) and arch_field is None:
            yield hf_source(value, role, where)
        elif isinstance(value, str):  # the arch as set, or its default
            arch = node.get(arch_field) or inspect.signature(
                MODELS.get(kind)).parameters[arch_field].default
            yield image_source(value, arch, role, where)
        elif kind == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            ckpt, where = node['checkpoint'], f'{key}.checkpoint'
            url = ckpt if ckpt.startswith(('http://', 'https://')) else None
            if url or '://' not in ckpt:
                yield WeightSource('pretrained init', ckpt,
                                   'url' if url else 'path', where, url=url)
        for name, value in node.items():
            yield from visit(value, f'{key}.{name}')

    return list(visit(cfg.get('model'), 'model'))


def _ensure(sources: List[WeightSource], config=None) -> List[str]:
    """The local copies (fetched unless offline), else one error for all."""
    paths, error, offline = [], None, constants.HF_HUB_OFFLINE
    for src in sources:
        path = src.locate()
        if not (path or src.kind == 'path' or error or offline):
            print_log(f'Downloading the {src.role} weights {src.name!r} into '
                      f'{src.cache_path()}', logger='current')
            try:
                path = src.fetch()
            except Exception as err:  # network, authorisation, unknown id
                error = err
        paths.append(path)
    missing = [src for src, path in zip(sources, paths) if path is None]
    if not missing:
        return paths
    hub = any(src.kind != 'path' for src in missing)  # not fetched: offline
    why = (f' (the download failed: {type(error).__name__}: {error})'
           if error else ' (offline: HF_HUB_OFFLINE=1)' if hub else '')
    lines = [f'{len(missing)} pretrained weight(s)'
             f'{f" of {config}" if config else ""} missing{why}:']
    for src in missing:  # where each was looked for
        named = f'{src.key} = {src.name!r}' if src.key else repr(src.name)
        where = f'the local path {osp.abspath(src.name)!r}'
        if src.kind != 'path':
            cache = ('torch hub cache (TORCH_HOME)' if src.url else
                     'Hugging Face cache (HF_HOME)')
            cache = f'the {cache}: {src.cache_path()}'
            where = f'{where} and {cache}' if src.kind == 'hf' else cache
        lines.append(f'  - {src.role} ({named}): looked in {where}')
    if hub:
        lines.append('Fetch them on a machine with internet access, with the '
                     'same HF_HOME and TORCH_HOME (e.g. a login node and a '
                     'shared file system): python tools/fetch_weights.py '
                     f'{config or "CONFIG"}')
    if any(src.kind == 'path' for src in missing):
        lines.append('Put the files at the local paths or change the paths in '
                     'the config (a Hugging Face id or timm tag also works).')
    raise WeightsNotFoundError('\n'.join(lines))


def check_weights(cfg) -> None:
    """Find or fetch every pretrained weight of ``cfg``, else one error."""
    _ensure(find_weights(cfg), getattr(cfg, 'filename', None))

"""Pretrained weights: local paths, Hugging Face ids, timm tags and URLs,
found in the caches by huggingface_hub and torch hub with no network, fetched
unless ``HF_HUB_OFFLINE=1`` (docs/training.md, "Pretrained weights")."""
import inspect
import os
import os.path as osp
import socket
from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import urlparse

from huggingface_hub import constants, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import HFValidationError, validate_repo_id
from mmengine.logging import print_log
from timm import list_pretrained
from timm.models import get_pretrained_cfg, is_model, split_model_name_tag

__all__ = [
    'WeightsNotFoundError', 'WeightSource', 'hf_source', 'image_source',
    'find_weights', 'check_weights', 'hub_offline'
]

# component type: (field naming its weights, role, field naming its timm arch)
_WEIGHT_FIELDS = {
    'TextImageDataPreprocessor': ('tokenizer', 'tokenizer', None),
    'BertTextEncoder': ('pretrained', 'text encoder', None),
    'TimmVisionTransformer': ('pretrained', 'image encoder', 'arch'),
    'TimmCNNEncoder': ('pretrained', 'image encoder', 'arch'),
    'BackboneAdapter': ('timm_checkpoint', 'image encoder', 'timm_model'),
}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not local, not cached and cannot be fetched."""


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE=1`` (the plugin applies it to URLs too)."""
    return bool(constants.HF_HUB_OFFLINE)


def _cached(repo_id: str, *filenames: str) -> Optional[str]:
    """The first of ``filenames`` in the hub cache, with no network."""
    paths = (try_to_load_from_cache(repo_id, name) for name in filenames)
    return next((path for path in paths if isinstance(path, str)), None)


@dataclass
class WeightSource:
    """One pretrained weight: ``kind`` ``'path'``, ``'hf'`` (a Hugging Face
    id), ``'timm'`` (the first of ``filenames`` in ``repo_id``) or ``'url'``
    (torch hub cache); ``key`` is where the config names it."""
    role: str
    name: str
    kind: str
    key: str = ''
    repo_id: Optional[str] = None
    filenames: Tuple[str, ...] = ()
    url: Optional[str] = None

    def locate(self) -> Optional[str]:
        """The local copy (an ``'hf'`` snapshot folder), with no network."""
        if self.kind in ('path', 'url'):
            path = self.cache_path() if self.url else self.name
            return path if osp.exists(path) else None
        if self.kind == 'timm':
            return _cached(self.repo_id, *self.filenames)
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
            from torch.hub import get_dir
            return osp.join(get_dir(), 'checkpoints',
                            osp.basename(urlparse(self.url).path))
        return osp.join(constants.HF_HUB_CACHE,
                        repo_folder_name(repo_id=self.repo_id,
                                         repo_type='model'))

    def describe(self) -> str:
        """A line of the missing-weights message: where it was looked for."""
        local = repr(osp.abspath(self.name))
        cache = ('torch hub cache (TORCH_HOME)' if self.url else
                 'Hugging Face cache (HF_HOME)')
        where = ('' if self.kind == 'path' else
                 f'the {cache}: {self.cache_path()}')
        where = {'path': f'the local path {local}', 'url': where,
                 'hf': f'the local folder {local} and {where}',
                 'timm': f'{" or ".join(self.filenames)} of {self.repo_id!r} '
                         f'in {where}'}[self.kind]
        named = f'{self.key} = {self.name!r}' if self.key else repr(self.name)
        return f'  - {self.role} ({named}): looked in {where}'

    def fetch(self) -> str:
        """Download into the cache; returns :meth:`locate`. Raises the hub's
        or the socket's own errors, or FileNotFoundError."""
        from huggingface_hub import HfApi, snapshot_download
        wait = constants.HF_HUB_ETAG_TIMEOUT
        if self.url:
            from torch.hub import download_url_to_file
            url = urlparse(self.url)
            if url.hostname:  # torch.hub waits with no time limit: look first
                socket.create_connection((url.hostname, url.port or (
                    443 if url.scheme == 'https' else 80)), wait).close()
            os.makedirs(osp.dirname(self.cache_path()), exist_ok=True)
            download_url_to_file(self.url, self.cache_path())
        else:
            # snapshot_download's own look-up waits with no time limit; this
            # one gives up after HF_HUB_ETAG_TIMEOUT s, and lists the files
            names = {s.rfilename for s in HfApi().model_info(
                self.repo_id, timeout=wait).siblings}
            patterns = ['*.json', '*.txt', '*.model']  # configs, vocabularies
            if self.kind == 'timm':
                patterns = [f for f in self.filenames if f in names][:1]
            elif self.role != 'tokenizer':  # the weights, in one format
                safe = any(n.startswith('model') and n.endswith(
                    '.safetensors') for n in names)
                patterns.append('model*.safetensors' if safe else
                                'pytorch_model*')
            snapshot_download(self.repo_id, allow_patterns=patterns)
        path = self.locate()
        if path is None:
            raise FileNotFoundError(f'{self.name!r}: the download brought '
                                    'none of the files looked for')
        return path

    def resolve(self) -> str:
        """:meth:`locate`, else :meth:`fetch` unless offline, else
        :class:`WeightsNotFoundError` naming where it looked."""
        return _ensure([self])[0]


def hf_source(name: str, role: str = 'text encoder',
              key: str = '') -> WeightSource:
    """A BERT or tokenizer field, read as transformers' ``from_pretrained``
    reads it: a path that exists, else a Hugging Face id if ``name`` is a
    valid repo id, else a (missing) local path."""
    try:
        if not osp.exists(name):
            validate_repo_id(name)
            return WeightSource(role, name, 'hf', key, repo_id=name)
    except HFValidationError:
        pass
    return WeightSource(role, name, 'path', key)


def image_source(name: str, arch: str, role: str = 'image encoder',
                 key: str = '') -> WeightSource:
    """A timm encoder's weights field: a file, an ``http(s)`` URL or a timm
    tag of ``arch`` (``'timm'``: its default), whose hub repo and file (or
    URL) timm's ``get_pretrained_cfg`` gives.

    Raises:
        ValueError: A tag of another architecture, an unknown tag, or one
            without downloadable weights.
    """
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
    if cfg and cfg.hf_hub_id:  # the files timm's hub loader tries, in order
        files = (constants.SAFETENSORS_SINGLE_FILE,
                 constants.PYTORCH_WEIGHTS_NAME)
        return WeightSource(role, name, 'timm', key,
                            cfg.hf_hub_id.split('@')[0], files)
    if cfg and cfg.url:
        return WeightSource(role, name, 'url', key, url=cfg.url)
    raise ValueError(f'{what}: timm has no downloadable weights for {name!r}')


def find_weights(cfg) -> List[WeightSource]:
    """Every pretrained weight ``cfg.model`` names, in config order: the
    tokenizer, BERT and timm encoder fields of the plugin's components, and
    each ``init_cfg=dict(type='Pretrained', checkpoint=...)`` naming a file or
    an ``http(s)`` URL (other schemes are MMEngine's)."""
    from mdrl_plugin.registry import MODELS
    found: List[WeightSource] = []

    def visit(node, key: str) -> None:
        if isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                visit(item, f'{key}[{i}]')
        if not isinstance(node, dict):
            return
        kind = node.get('type')
        kind = kind.split('.')[-1] if isinstance(kind, str) else getattr(
            kind, '__name__', None)
        field, role, arch_field = _WEIGHT_FIELDS.get(kind, (None, ) * 3)
        value, where = node.get(field), f'{key}.{field}'
        if isinstance(value, str) and arch_field is None:
            found.append(hf_source(value, role, where))
        elif isinstance(value, str):  # the arch as set, or its default
            arch = node.get(arch_field) or inspect.signature(
                MODELS.get(kind)).parameters[arch_field].default
            found.append(image_source(value, arch, role, where))
        elif kind == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            ckpt, where = node['checkpoint'], f'{key}.checkpoint'
            url = ckpt if ckpt.startswith(('http://', 'https://')) else None
            if url or '://' not in ckpt:
                found.append(WeightSource('pretrained init', ckpt, 'url' if url
                                          else 'path', where, url=url))
        for name, value in node.items():
            visit(value, f'{key}.{name}')

    visit(cfg.get('model'), 'model')
    return found


def _ensure(sources: List[WeightSource], config=None) -> List[str]:
    """The local copies, fetching what is missing unless offline (none after
    a failed download); else one error listing every weight still missing,
    where each was looked for and the command that fetches them."""
    paths, missing, error = [], [], None
    for src in sources:
        path = src.locate()
        if not (path or src.kind == 'path' or error or hub_offline()):
            print_log(f'Downloading the {src.role} weights {src.name!r} into '
                      f'{src.cache_path()}', logger='current')
            try:
                path = src.fetch()
            except Exception as err:  # network, authorisation, unknown id
                error = err
        paths.append(path)
        missing += [src] if path is None else []
    if not missing:
        return paths
    hub = any(src.kind != 'path' for src in missing)
    why = (f' (the download failed: {type(error).__name__}: {error})'
           if error else ' (offline: HF_HUB_OFFLINE=1)'
           if hub and hub_offline() else '')
    lines = [f'{len(missing)} pretrained weight(s)'
             f'{f" of {config}" if config else ""} missing{why}:']
    lines += [src.describe() for src in missing]
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
    """Make sure every pretrained weight of a config is here, before any
    work (what is not cached is fetched now, unless offline); else one
    :class:`WeightsNotFoundError` listing every missing weight."""
    _ensure(find_weights(cfg), getattr(cfg, 'filename', None))

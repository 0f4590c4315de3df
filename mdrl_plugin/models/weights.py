"""Where pretrained weights come from: local paths, hub ids and URLs.

Every field that names pretrained weights takes

* a local path; one that exists always wins;
* for BERT and its tokenizer, a Hugging Face model id (``'bert-base-uncased'``),
  kept in the Hugging Face cache (``HF_HOME``, default
  ``~/.cache/huggingface``);
* for the timm image encoders, a timm tag
  (``'vit_base_patch16_224.orig_in21k_ft_in1k'``; ``'timm'`` is the
  architecture's default tag), whose weights timm keeps in the same cache, or
  an ``http(s)://`` URL, kept in the torch hub cache (``TORCH_HOME``) where
  MMEngine's ``Pretrained`` init keeps its downloads.

A cached id or URL loads without network access. One that is not cached is
downloaded, unless ``HF_HUB_OFFLINE=1``: then, or when the download fails, a
:class:`WeightsNotFoundError` names what is missing, where it was looked for
and the command that fetches it. :func:`check_weights` does this for a whole
config before anything is built.
"""
import inspect
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple
from urllib.parse import urlparse

import torch.nn as nn
from mmengine.logging import MMLogger, print_log

__all__ = [
    'WeightsNotFoundError', 'WeightSource', 'hf_source', 'image_source',
    'find_weights', 'check_weights', 'hub_offline', 'load_timm_checkpoint'
]

FETCH_COMMAND = 'python tools/fetch_weights.py {config}'

# component type: (field naming its weights, role, field naming its timm arch)
_WEIGHT_FIELDS = {
    'TextImageDataPreprocessor': ('tokenizer', 'tokenizer', None),
    'BertTextEncoder': ('pretrained', 'text encoder', None),
    'TimmVisionTransformer': ('pretrained', 'image encoder', 'arch'),
    'TimmCNNEncoder': ('pretrained', 'image encoder', 'arch'),
    'BackboneAdapter': ('timm_checkpoint', 'image encoder', 'timm_model'),
}
# what transformers' from_pretrained reads (any one of each group)
_MODEL_FILES = ('model.safetensors', 'model.safetensors.index.json',
                'pytorch_model.bin', 'pytorch_model.bin.index.json')
_TOKENIZER_FILES = ('tokenizer.json', 'vocab.txt', 'vocab.json',
                    'tokenizer.model', 'spiece.model')


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not local, not cached and cannot be fetched."""


def hub_offline() -> bool:
    """Whether Hugging Face's offline mode is on (``HF_HUB_OFFLINE=1``).

    The plugin applies it to URLs (torch hub cache) as well.
    """
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def _hf_cached(repo_id: str, filename: str,
               revision: Optional[str] = None) -> Optional[str]:
    from huggingface_hub import try_to_load_from_cache
    path = try_to_load_from_cache(repo_id, filename, revision=revision)
    return path if isinstance(path, str) else None


def _hf_repo_folder(repo_id: str) -> str:
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name
    return osp.join(constants.HF_HUB_CACHE,
                    repo_folder_name(repo_id=repo_id, repo_type='model'))


def _check_reachable(url: str, timeout: float = 10.0) -> None:
    """Fail fast without a network (the hub clients retry for minutes).

    Raises:
        ConnectionError: ``url``'s server cannot be reached.
    """
    from urllib.error import HTTPError, URLError
    from urllib.request import Request, urlopen
    try:
        urlopen(Request(url, method='HEAD'), timeout=timeout).close()
    except HTTPError:
        pass  # the server answered
    except (URLError, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise ConnectionError(f'cannot reach {urlparse(url).netloc}: '
                              f'{reason}') from err


def _torch_hub_file(url: str) -> str:
    import torch.hub
    return osp.join(torch.hub.get_dir(), 'checkpoints',
                    osp.basename(urlparse(url).path))


@dataclass
class WeightSource:
    """One pretrained weight of a config and where it can come from.

    Attributes:
        role: ``'tokenizer'``, ``'text encoder'`` or ``'image encoder'``.
        name: The value as written: a path, Hugging Face id, timm tag or URL.
        kind: ``'path'`` (a local path), ``'hf'`` (Hugging Face model id),
            ``'timm'`` (timm weights in the Hugging Face cache) or ``'url'``
            (torch hub cache).
        key: Where the config names it, e.g. ``'model.text_encoder.pretrained'``.
        repo_id: Hugging Face repo of ``'hf'`` and ``'timm'`` weights.
        revision: Its revision (None: the default branch).
        filenames: ``'timm'``: the weight files to try in the repo, in order.
        url: ``'url'``: the address (``name`` may be a timm tag).
    """
    role: str
    name: str
    kind: str
    key: str = ''
    repo_id: Optional[str] = None
    revision: Optional[str] = None
    filenames: Tuple[str, ...] = ()
    url: Optional[str] = None

    def locate(self) -> Optional[str]:
        """The local copy, found without network access.

        Returns:
            The path (a folder for ``'hf'``, else a file), or None.
        """
        if self.kind == 'path':
            return self.name if osp.exists(self.name) else None
        if self.kind == 'url':
            path = _torch_hub_file(self.url)
            return path if osp.isfile(path) else None
        if self.kind == 'timm':
            for filename in self.filenames:
                path = _hf_cached(self.repo_id, filename, self.revision)
                if path:
                    return path
            return None
        # 'hf': one of each group of the files from_pretrained reads
        needs = ([_TOKENIZER_FILES, ('tokenizer_config.json', 'config.json')]
                 if self.role == 'tokenizer' else
                 [('config.json', ), _MODEL_FILES])
        found = []
        for group in needs:
            paths = [_hf_cached(self.repo_id, f) for f in group]
            found += [p for p in paths if p][:1]
        if len(found) < len(needs):
            return None
        return osp.dirname(found[0])

    def cache_path(self) -> str:
        """Where a download of these weights goes (for messages)."""
        if self.kind == 'url':
            return _torch_hub_file(self.url)
        return _hf_repo_folder(self.repo_id)

    def looked_in(self) -> str:
        """Where :meth:`locate` looked, for messages."""
        if self.kind == 'path':
            return f'the local path {osp.abspath(self.name)!r}'
        if self.kind == 'url':
            return f'the torch hub cache (TORCH_HOME): {self.cache_path()}'
        where = f'the Hugging Face cache (HF_HOME): {self.cache_path()}'
        if self.kind == 'timm':
            return f'{" or ".join(self.filenames)} of {self.repo_id!r} in {where}'
        return f'the local folder {osp.abspath(self.name)!r} and {where}'

    def fetch(self) -> str:
        """Download the weights into their cache (needs the network).

        Returns:
            The local path, as :meth:`locate` gives it.

        Raises:
            WeightsNotFoundError: A local path (nothing to download).
            ConnectionError: The server cannot be reached (checked first).
        """
        if self.kind == 'path':
            raise WeightsNotFoundError(describe_missing([self]))
        from huggingface_hub import constants
        _check_reachable(self.url if self.kind == 'url' else constants.ENDPOINT)
        if self.kind == 'url':
            import torch.hub
            path = _torch_hub_file(self.url)
            os.makedirs(osp.dirname(path), exist_ok=True)
            torch.hub.download_url_to_file(self.url, path)  # via a temp file
            return path
        if self.kind == 'timm':
            from huggingface_hub import hf_hub_download
            from huggingface_hub.utils import EntryNotFoundError
            for filename in self.filenames[:-1]:
                try:
                    return hf_hub_download(self.repo_id, filename,
                                           revision=self.revision)
                except EntryNotFoundError:
                    continue
            return hf_hub_download(self.repo_id, self.filenames[-1],
                                   revision=self.revision)
        # 'hf': the real loaders download exactly what they read
        from transformers import AutoModel, AutoTokenizer
        loader = AutoTokenizer if self.role == 'tokenizer' else AutoModel
        loader.from_pretrained(self.repo_id)
        return self.locate() or _hf_repo_folder(self.repo_id)

    def resolve(self) -> str:
        """The local copy, downloaded first if needed and allowed.

        Returns:
            The path :meth:`locate` gives.

        Raises:
            WeightsNotFoundError: Not local, not cached, and offline or the
                download failed; the message says where it was looked for
                and how to fetch it.
        """
        path = self.locate()
        if path is not None:
            return path
        if self.kind == 'path' or hub_offline():
            raise WeightsNotFoundError(describe_missing([self]))
        try:
            return self.fetch()
        except Exception as err:  # network, authorisation, unknown id, ...
            raise WeightsNotFoundError(describe_missing([self], error=err)) from err


def _is_hub_id(name: str) -> bool:
    """Whether a missing path reads as a Hugging Face id rather than a path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    if (osp.isabs(name) or name.startswith(('.', '~')) or '\\' in name
            or name.count('/') > 1
            or ('/' in name and osp.isdir(name.split('/')[0]))):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hf_source(name: str, role: str = 'text encoder', key: str = '') -> WeightSource:
    """Read a BERT or tokenizer field: a local folder or a Hugging Face id.

    A folder that exists wins. A missing relative path of at most one ``/``
    whose first part is no local folder (``'bert-base-uncased'``,
    ``'google-bert/bert-base-uncased'``) is a Hugging Face id.

    Args:
        name: The field's value.
        role: ``'tokenizer'`` or ``'text encoder'``.
        key: Where the config names it (for messages).

    Returns:
        The source.
    """
    if not osp.exists(name) and _is_hub_id(name):
        return WeightSource(role, name, 'hf', key, repo_id=name)
    return WeightSource(role, name, 'path', key)


def image_source(name: str, arch: str, role: str = 'image encoder',
                 key: str = '') -> WeightSource:
    """Read a timm encoder's weights field: a file, a timm tag or a URL.

    Args:
        name: A local checkpoint file; a timm tag of ``arch``
            (``'<arch>.<tag>'``), or ``'timm'`` for the default tag of
            ``arch``; or an ``http(s)://`` URL.
        arch: The timm architecture the weights are for (needed for tags).
        role: For messages.
        key: Where the config names it (for messages).

    Returns:
        The source.

    Raises:
        ValueError: A timm tag of another architecture, an unknown tag, or
            one without downloadable weights.
    """
    if osp.exists(name):
        return WeightSource(role, name, 'path', key)
    if name.startswith(('http://', 'https://')):
        return WeightSource(role, name, 'url', key, url=name)
    from timm.models import get_pretrained_cfg, is_model, split_model_name_tag
    model_name, tag = split_model_name_tag(name)
    if name != 'timm' and ('/' in name or not tag or not is_model(model_name)):
        return WeightSource(role, name, 'path', key)
    if not arch:
        raise ValueError(f'{key or role}: the timm tag {name!r} needs the '
                         'timm architecture it is for')
    arch_name = split_model_name_tag(arch)[0]
    if name != 'timm' and model_name != arch_name:
        raise ValueError(f'{key or role}: {name!r} is a timm tag of '
                         f'{model_name!r}, but the architecture is {arch!r}')
    tag_name = arch if name == 'timm' else name
    try:
        cfg = get_pretrained_cfg(tag_name)
    except RuntimeError as err:  # an unknown tag
        import timm
        raise ValueError(f'{key or role}: {err} Known tags: '
                         f'{", ".join(timm.list_pretrained(arch_name + ".*"))}') from err
    if cfg is not None and cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition('@')
        files = ((cfg.hf_hub_filename, ) if cfg.hf_hub_filename else
                 ('model.safetensors', 'pytorch_model.bin'))
        return WeightSource(role, name, 'timm', key, repo_id=repo_id,
                            revision=revision or None, filenames=files)
    if cfg is not None and cfg.url:
        return WeightSource(role, name, 'url', key, url=cfg.url)
    raise ValueError(f'{key or role}: timm has no downloadable weights for '
                     f'{tag_name!r}')


def describe_missing(sources: List[WeightSource], config: Optional[str] = None,
                     error: Optional[BaseException] = None) -> str:
    """One message for weights that are not available.

    Args:
        sources: The missing weights.
        config: The config file naming them.
        error: Why the (first) download failed, if one was tried.

    Returns:
        The message: each weight, where it was looked for, and the command
        that fetches them.
    """
    of = f' of {config}' if config else ''
    if error is not None:
        why = f' (the download failed: {type(error).__name__}: {error})'
    elif hub_offline() and any(src.kind != 'path' for src in sources):
        why = ' (offline: HF_HUB_OFFLINE=1)'
    else:
        why = ''
    lines = [f'{len(sources)} pretrained weight(s){of} missing{why}:']
    for src in sources:
        named = f'{src.key} = {src.name!r}' if src.key else repr(src.name)
        lines.append(f'  - {src.role} ({named}): looked in {src.looked_in()}')
    if any(src.kind != 'path' for src in sources):
        lines.append(
            'Fetch them on a machine with internet access, with the same '
            'HF_HOME and TORCH_HOME (e.g. a login node and a shared file '
            f'system): {FETCH_COMMAND.format(config=config or "CONFIG")}')
    if any(src.kind == 'path' for src in sources):
        lines.append('Put the files at the local paths or change the paths in '
                     'the config (a Hugging Face id or timm tag also works).')
    return '\n'.join(lines)


def _arch_default(type_name: str, arg: str) -> Optional[str]:
    from mdrl_plugin.registry import MODELS
    cls = MODELS.get(type_name)
    param = inspect.signature(cls).parameters.get(arg) if cls else None
    return param.default if param is not None else None


def _role_of(key: str) -> str:
    part = key.split('.')[1] if key.count('.') else ''
    return {'image_encoder': 'image encoder',
            'text_encoder': 'text encoder'}.get(part, 'pretrained init')


def find_weights(cfg) -> List[WeightSource]:
    """Every pretrained weight a config's model names.

    That is the tokenizer, BERT and timm image encoder fields of the plugin's
    components and every ``init_cfg=dict(type='Pretrained', checkpoint=...)``
    with a local file or an ``http(s)`` URL (other schemes are left to
    MMEngine).

    Args:
        cfg: A config (or dict) with a ``model`` entry.

    Returns:
        The sources, in config order.
    """
    found: List[WeightSource] = []

    def visit(node, key: str) -> None:
        if isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                visit(item, f'{key}[{i}]')
            return
        if not isinstance(node, dict):
            return
        kind = node.get('type')
        type_name = (kind.split('.')[-1] if isinstance(kind, str) else
                     getattr(kind, '__name__', None))
        if type_name in _WEIGHT_FIELDS:
            field, role, arch_field = _WEIGHT_FIELDS[type_name]
            value = node.get(field)
            if isinstance(value, str):
                where = f'{key}.{field}'
                if arch_field is None:
                    found.append(hf_source(value, role, where))
                else:
                    arch = node.get(arch_field) or _arch_default(type_name,
                                                                 arch_field)
                    found.append(image_source(value, arch, role, where))
        elif type_name == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            ckpt, where = node['checkpoint'], f'{key}.checkpoint'
            if ckpt.startswith(('http://', 'https://')):
                found.append(WeightSource(_role_of(key), ckpt, 'url', where, url=ckpt))
            elif '://' not in ckpt:
                found.append(WeightSource(_role_of(key), ckpt, 'path', where))
        for name, value in node.items():
            visit(value, f'{key}.{name}')

    visit(cfg.get('model'), 'model')
    return found


def check_weights(cfg) -> None:
    """Make sure every pretrained weight of a config is here, before any work.

    Local paths and cached ids need no network. Ids and URLs that are not
    cached are downloaded now, unless ``HF_HUB_OFFLINE=1`` (after one failed
    download the others are not tried).

    Args:
        cfg: The config (its ``filename`` is named in the message).

    Raises:
        WeightsNotFoundError: Something is missing; one message lists every
            missing weight, where each was looked for and the command that
            fetches them.
    """
    missing = [src for src in find_weights(cfg) if src.locate() is None]
    error = None
    if missing and not hub_offline():
        still_missing = []
        for src in missing:
            if src.kind == 'path' or error is not None:
                still_missing.append(src)
                continue
            print_log(f'Downloading the {src.role} weights {src.name!r} into '
                      f'{src.cache_path()}', logger='current')
            try:
                src.fetch()
            except Exception as err:  # network, authorisation, unknown id
                error = err
                still_missing.append(src)
        missing = still_missing
    if missing:
        raise WeightsNotFoundError(describe_missing(
            missing, getattr(cfg, 'filename', None), error))


def check_checkpoint_file(path: str, what: str = 'weights') -> str:
    """Raise a helpful error when a local checkpoint file does not exist.

    Args:
        path: File path.
        what: Words for the error message, e.g. ``'ViT pretrained weights'``.

    Returns:
        ``path``.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{what}: file {path!r} does not exist. Put the checkpoint file '
            'there (a .pth/.bin/.safetensors state dict), or name a timm tag '
            'or URL, or change the path in the config.')
    return path


def load_timm_checkpoint(model: nn.Module,
                         path: str,
                         what: str = 'weights',
                         filter_fn: Optional[Callable] = None) -> None:
    """Load a local state dict into a timm model with ``timm.models.load_checkpoint``.

    timm reads ``.pth``/``.bin`` files with ``torch.load(weights_only=True)``
    (no arbitrary unpickling) and ``.safetensors`` files with safetensors,
    unwraps a ``state_dict``/``model`` entry and removes a ``module.`` prefix.
    Loading is non-strict: keys the model lacks (e.g. a classifier head) are
    logged at INFO level, keys the checkpoint lacks at WARNING level (they
    keep their random initialisation).

    Args:
        model: The timm model.
        path: Local checkpoint file.
        what: Words for messages, e.g. ``'ViT pretrained weights'``.
        filter_fn: timm's ``checkpoint_filter_fn(state_dict, model)`` of the
            model's family (e.g. resampling ViT position embeddings).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: no key of the checkpoint matches the model.
    """
    from timm.models import load_checkpoint
    check_checkpoint_file(path, what)
    missing, unexpected = load_checkpoint(
        model, path, use_ema=False, strict=False, filter_fn=filter_fn)
    logger = MMLogger.get_current_instance()
    logger.info(f'Loaded {what} from {path}; keys the model does not use: '
                f'{unexpected or "none"}')
    missing = [key for key in missing if not key.endswith('num_batches_tracked')]
    if missing:
        logger.warning(f'{what} {path}: {len(missing)} key(s) of the model are '
                       f'missing from the checkpoint and keep their random '
                       f'initialisation: {missing}')
    # BatchNorm's num_batches_tracked is filled in silently when absent
    loaded = [key for key in model.state_dict() if key not in set(missing)
              and not key.endswith('num_batches_tracked')]
    if not loaded:
        raise ValueError(f'{what} {path!r}: no key matches the model; is this '
                         'a checkpoint of the same architecture?')

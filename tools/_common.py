"""Command-line pieces shared by the tools (not part of the library).

* :func:`add_common_args` / :func:`apply_common_args`: the options
  ``tools/train.py`` and ``tools/test.py`` share;
* input checks that run before any model is built (:func:`check_file`,
  :func:`check_checkpoint`, :func:`check_data_roots`,
  :func:`check_output_path`, :func:`check_work_dir`);
* :func:`report_user_errors`: expected user errors print one paragraph and
  exit non-zero; a traceback only with ``--debug``.
"""
import argparse
import contextlib
import os
import os.path as osp
import sys
from typing import Iterable, Iterator, Sequence, Tuple, Type

from mmengine.config import Config, DictAction

from mdrl_plugin.datasets.errors import (AnnotationFormatError,
                                         AnnotationNotFoundError,
                                         DatasetNotFoundError, EmptySplitError,
                                         MissingImagesError)
from mdrl_plugin.engine import (LAUNCHERS, AtomicWriteError,
                                CheckpointLoadError, CheckpointMismatchError,
                                NumClassesMismatchError,
                                default_work_dir,
                                disable_safe_checkpoint_loading,
                                enable_safe_checkpoint_loading,
                                safe_checkpoint_loading_enabled,
                                set_allow_unsafe_checkpoints,
                                unsafe_checkpoints_allowed)
from mdrl_plugin.engine.checkpoint import _check_torch_file_header

__all__ = [
    'InputError', 'USER_ERRORS', 'add_common_args', 'apply_common_args',
    'check_file', 'check_checkpoint', 'check_data_roots', 'check_output_path',
    'check_work_dir', 'use_checkpoint_loading_hook', 'report_user_error',
    'add_partial_and_debug_args', 'safe_checkpoint_loading'
]


class InputError(ValueError):
    """A command-line argument or config entry is unusable (exit status 2)."""


#: Errors that come from what the user gave, not from a bug: reported as one
#: paragraph, without a traceback (unless --debug).
USER_ERRORS: Tuple[Type[BaseException], ...] = (
    InputError, AtomicWriteError, CheckpointLoadError,
    CheckpointMismatchError,
    NumClassesMismatchError, DatasetNotFoundError, AnnotationNotFoundError,
    AnnotationFormatError, MissingImagesError, EmptySplitError)


def add_common_args(parser: argparse.ArgumentParser,
                    work_dir_help: str) -> None:
    """Add the options ``tools/train.py`` and ``tools/test.py`` share.

    ``--work-dir``, ``--cfg-options``, ``--launcher``,
    ``--allow-unsafe-checkpoint``, ``--allow-partial-checkpoint``,
    ``--debug`` and ``--local_rank`` (as passed by
    ``torch.distributed.launch``).

    Args:
        parser: The tool's parser.
        work_dir_help: What the work dir holds, for the help text.
    """
    parser.add_argument(
        '--work-dir',
        help=f'the dir to save {work_dir_help} (default: the config\'s '
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_cfg.max_epochs=10 optim_wrapper.optimizer.lr=0.01')
    parser.add_argument(
        '--launcher', choices=LAUNCHERS, default='none', help='job launcher')
    parser.add_argument(
        '--allow-unsafe-checkpoint',
        action='store_true',
        help='load checkpoints with full unpickling (can run code stored in '
        'the file; only for checkpoints you trust)')
    add_partial_and_debug_args(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def add_partial_and_debug_args(parser: argparse.ArgumentParser) -> None:
    """``--allow-partial-checkpoint`` and ``--debug`` (every model tool).

    Args:
        parser: The tool's parser.
    """
    parser.add_argument(
        '--allow-partial-checkpoint',
        action='store_true',
        help='load a checkpoint whose keys or shapes do not all match the '
        'model; what does not fit keeps its initialisation (listed in the '
        'log). Without it such a checkpoint is refused.')
    parser.add_argument(
        '--debug',
        action='store_true',
        help='show the Python traceback of input errors too')


def apply_common_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the options of :func:`add_common_args` to ``cfg``.

    Sets the launcher, merges ``--cfg-options``, chooses the work dir (the
    flag, else the config's, else ``work_dirs/<config name>``), exports
    ``LOCAL_RANK`` for launchers that pass ``--local_rank`` and adds the
    :class:`~mdrl_plugin.engine.CheckpointLoadingHook`.

    Args:
        cfg: The config.
        args: Parsed arguments (with ``config``).

    Returns:
        The updated config.
    """
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = default_work_dir(args.config)
    use_checkpoint_loading_hook(cfg, args.allow_partial_checkpoint)
    return cfg


def use_checkpoint_loading_hook(cfg: Config, allow_partial: bool) -> Config:
    """Make sure the run checks checkpoints with ``CheckpointLoadingHook``.

    A hook already in ``custom_hooks`` is kept (with its allow-list);
    ``allow_partial=True`` switches partial loading on in it.

    Args:
        cfg: The config (modified in place).
        allow_partial: ``--allow-partial-checkpoint``.

    Returns:
        The same config.
    """
    hooks = list(cfg.get('custom_hooks', None) or [])
    names = ('CheckpointLoadingHook', 'mdrl_plugin.CheckpointLoadingHook')
    ours = [h for h in hooks if h.get('type') in names]
    if not ours:
        ours = [dict(type='mdrl_plugin.CheckpointLoadingHook')]
        hooks.append(ours[0])
    if allow_partial:
        for hook in ours:
            hook['allow_partial'] = True
    cfg.custom_hooks = hooks
    return cfg


def check_file(path: str, what: str, hint: str = '') -> str:
    """An existing file, or :class:`InputError` naming it.

    Args:
        path: The path.
        what: What it is, e.g. ``'config file'``.
        hint: What the user should give instead.

    Returns:
        ``path``.
    """
    if not osp.isfile(path):
        state = 'is a folder, not a file' if osp.isdir(path) else \
            'does not exist'
        raise InputError(
            f"{what} '{path}' {state}.{' ' + hint if hint else ''}")
    return path


def check_checkpoint(path: str, what: str = 'checkpoint file') -> str:
    """A local file that looks like a PyTorch checkpoint (URIs pass).

    Only the file's header is read; the weights are compared with the model
    when it is loaded.

    Args:
        path: Checkpoint path or URI.
        what: What it is, for the message.

    Returns:
        ``path``.
    """
    if '://' in path:
        return path
    check_file(path, what)
    if not path.endswith('.safetensors'):
        _check_torch_file_header(path)
    return path


def _dataset_cfgs(cfg: Config,
                  loaders: Iterable[str]) -> Iterator[Tuple[str, dict]]:
    for loader in loaders:
        loader_cfg = cfg.get(loader, None)
        dataset = loader_cfg.get('dataset', None) if loader_cfg else None
        while isinstance(dataset, dict):
            yield loader, dataset
            dataset = dataset.get('dataset', None)  # wrappers


def check_data_roots(cfg: Config, loaders: Sequence[str]) -> None:
    """The ``data_root`` (and an explicit ``ann_file``) of each dataloader.

    Args:
        cfg: The config.
        loaders: e.g. ``('train_dataloader', 'val_dataloader')``.

    Raises:
        InputError: A folder or file does not exist.
    """
    for loader, dataset in _dataset_cfgs(cfg, loaders):
        root = dataset.get('data_root', None)
        if root and not osp.isdir(root):
            state = 'is not a folder' if osp.exists(root) else \
                'does not exist'
            raise InputError(
                f"{loader}.dataset.data_root '{root}' {state} (working "
                f"directory '{os.getcwd()}'). Point it at the dataset folder "
                '(holding imgs/ and the annotation JSON), e.g. with '
                f'--cfg-options {loader}.dataset.data_root=PATH, or create '
                'the demo data with tools/make_demo_data.py.')
        ann = dataset.get('ann_file', None)
        if root and isinstance(ann, str) and ann:
            full = ann if osp.isabs(ann) else osp.join(root, ann)
            if not osp.isfile(full):
                raise InputError(
                    f"{loader}.dataset.ann_file '{full}' does not exist.")


def _writable_dir(folder: str, what: str) -> None:
    probe = osp.abspath(folder)
    while not osp.exists(probe):
        probe = osp.dirname(probe)
    if not osp.isdir(probe):
        raise InputError(f"{what}: '{probe}' is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{what}: cannot write to the folder '{probe}' "
                         '(permission denied or a read-only file system).')


def check_work_dir(work_dir: str) -> str:
    """A work dir that exists and is writable, or can be created.

    Args:
        work_dir: The folder.

    Returns:
        ``work_dir``.
    """
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise InputError(f"work dir '{work_dir}' is a file, not a folder.")
    _writable_dir(work_dir, f"work dir '{work_dir}'")
    return work_dir


def check_output_path(path: str, suffixes: Sequence[str], what: str) -> str:
    """An output file with one of ``suffixes`` in a writable folder.

    Args:
        path: The file to write.
        suffixes: Accepted endings, e.g. ``('.json',)``.
        what: The option, e.g. ``'--out'``.

    Returns:
        ``path``.
    """
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        raise InputError(f"{what} '{path}' must be a "
                         f"{' or '.join(suffixes)} file.")
    if osp.isdir(path):
        raise InputError(f"{what} '{path}' is a folder; give a file name.")
    _writable_dir(osp.dirname(osp.abspath(path)), f"{what} '{path}'")
    return path


def report_user_error(prog: str, error: BaseException, debug: bool) -> None:
    """Print an expected user error as one paragraph (or re-raise it).

    Call it in an ``except USER_ERRORS`` block, then return a non-zero
    status.

    Args:
        prog: The tool, e.g. ``'tools/test.py'``.
        error: The caught error.
        debug: ``--debug``: re-raise, with the traceback.
    """
    if debug:
        raise error
    message = error.args[0] if isinstance(error, KeyError) and error.args \
        else error
    print(f'{prog}: error: {message}', file=sys.stderr)


@contextlib.contextmanager
def safe_checkpoint_loading(allow_unsafe: bool = False) -> Iterator[None]:
    """The safe checkpoint loader for the tool's run, then what was before.

    torch >= 2.6 cannot read MMEngine 0.10.7 checkpoints with its default
    loader; the tools therefore switch the plugin's safe loader on (see
    :func:`~mdrl_plugin.engine.enable_safe_checkpoint_loading`).

    Args:
        allow_unsafe: ``--allow-unsafe-checkpoint``.
    """
    was_safe = safe_checkpoint_loading_enabled()
    was_unsafe = unsafe_checkpoints_allowed()
    enable_safe_checkpoint_loading(allow_unsafe=allow_unsafe)
    try:
        yield
    finally:
        if not was_safe:
            disable_safe_checkpoint_loading()
        if allow_unsafe and not was_unsafe:
            set_allow_unsafe_checkpoints(False)

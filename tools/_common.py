"""What tools/train.py, test.py and search.py share: options, input checks
made before anything is built, and one-paragraph user errors (a traceback
only with ``--debug``)."""
import argparse
import gc
import os
import os.path as osp
import sys
from typing import Any, Callable, NamedTuple, Sequence

import torch.distributed
from mmengine.config import Config, DictAction
from mmengine.dist import barrier, is_distributed

from mdrl_plugin.datasets.errors import (
    AnnotationFormatError,
    AnnotationNotFoundError,
    DatasetNotFoundError,
    EmptySplitError,
    MissingImagesError,
)
from mdrl_plugin.engine import (
    LAUNCHERS,
    AtomicWriteError,
    CheckpointLoadError,
    CheckpointMismatchError,
    NumClassesMismatchError,
    adapt_cfg_for_device,
    setup_distributed,
)
from mdrl_plugin.engine.checkpoint import check_torch_file

__all__ = [
    'InputError', 'USER_ERRORS', 'add_common_args',
    'add_partial_and_debug_args', 'check_file', 'check_checkpoint',
    'check_data_roots', 'check_output_path', 'check_work_dir',
    'check_writable_dir', 'report_user_error', 'run_tool', 'ToolRun'
]


class InputError(ValueError):
    """A command-line argument or config entry is unusable (exit status 2)."""


#: Errors caused by what the user gave: one paragraph, no traceback.
USER_ERRORS = (InputError, AtomicWriteError, CheckpointLoadError,
               CheckpointMismatchError, NumClassesMismatchError,
               DatasetNotFoundError, AnnotationNotFoundError,
               AnnotationFormatError, MissingImagesError, EmptySplitError)


def add_partial_and_debug_args(parser: argparse.ArgumentParser) -> None:
    """``--allow-partial-checkpoint`` and ``--debug`` (every model tool)."""
    parser.add_argument(
        '--allow-partial-checkpoint', action='store_true',
        help='load a checkpoint whose keys or shapes do not all match the '
        'model; what does not fit keeps its initialisation (listed in the '
        'log). Without it such a checkpoint is refused.')
    parser.add_argument('--debug', action='store_true',
                        help='show the Python traceback of input errors too')


def add_common_args(parser: argparse.ArgumentParser, holds: str) -> None:
    """The options of tools/train.py and tools/test.py (``holds``: what the
    work dir holds, for the help text)."""
    parser.add_argument(
        '--work-dir', help=f"the dir to save {holds} (default: the config's "
        'work_dir, else work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_cfg.max_epochs=10 optim_wrapper.optimizer.lr=0.01')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none')
    parser.add_argument(
        '--allow-unsafe-checkpoint', action='store_true',
        help='load checkpoints with full unpickling (can run code stored in '
        'the file; only for checkpoints you trust)')
    add_partial_and_debug_args(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _apply_common_args(cfg: Config, args: argparse.Namespace) -> None:
    """The options above; a strict, safe ``CheckpointLoadingHook``."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg.launcher = args.launcher
    try:
        cfg.merge_from_dict(args.cfg_options or {})
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise InputError(
            f'--cfg-options: cannot apply {args.cfg_options} to '
            f'{args.config} ({type(e).__name__}: {e}); a key follows the '
            "config's nesting: dicts by name, lists by index.") from e
    cfg.work_dir = args.work_dir or cfg.get('work_dir', None) or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    hooks = list(cfg.get('custom_hooks', None) or [])
    ours = [h for h in hooks if h.get('type') in (
        'CheckpointLoadingHook', 'mdrl_plugin.CheckpointLoadingHook')]
    if not ours:
        hooks.append(dict(type='mdrl_plugin.CheckpointLoadingHook'))
        ours = hooks[-1:]
    for hook in ours:
        for key in ('allow_partial', 'allow_unsafe'):
            hook[key] = hook.get(key, False) or getattr(
                args, f'{key}_checkpoint')
    cfg.custom_hooks = hooks
    adapt_cfg_for_device(cfg, args.launcher)
    if (cfg.get('randomness', None) or {}).get('deterministic', False):
        # cuBLAS needs it before its first call under deterministic mode
        os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')


class ToolRun(NamedTuple):
    """What :func:`run_tool` hands back (the Runner itself is released)."""
    status: int  # 0, 1 for user errors while running, 2 for input errors
    rank: int = 0
    work_dir: str = ''
    result: Any = None


def _build_and_run(cfg: Config, method: str) -> ToolRun:
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
        RUNNERS.build(cfg)
    result = getattr(runner, method)()  # train(): the model, not kept
    return ToolRun(0, runner.rank, runner.work_dir,
                   None if method == 'train' else result)


def run_tool(prog: str, args: argparse.Namespace,
             prepare: Callable[[Config], None], method: str) -> ToolRun:
    """Load the config, apply the common options and ``prepare`` (the
    tool's own options and checks), then build the Runner and call
    ``method`` (``'train'`` or ``'test'``); errors are reported as ``prog``.
    """
    try:
        try:
            cfg = Config.fromfile(args.config)
        except (OSError, SyntaxError) as e:  # not all name the file
            raise InputError(str(e) if args.config in str(e) else
                             f'config {args.config}: {e}') from e
        _apply_common_args(cfg, args)
        prepare(cfg)
        setup_distributed(args.launcher)  # names missing launcher variables
    except (OSError, ValueError, SyntaxError, RuntimeError) + USER_ERRORS as e:
        report_user_error(prog, e, args.debug)
        return ToolRun(2)
    run = None
    try:
        run = _build_and_run(cfg, method)
    except USER_ERRORS as e:
        report_user_error(prog, e, args.debug)
        run = ToolRun(1)
    finally:
        # collect the Runner (gone with _build_and_run's frame) now: its DDP
        # wrapper's gloo threads, left to the interpreter's exit, SIGABRT
        gc.collect()
        if is_distributed():
            try:
                if run is not None and run.status == 0:
                    barrier()
            finally:
                torch.distributed.destroy_process_group()
    return run


def check_file(path: str, what: str) -> str:
    """``path`` if it is a file, else :class:`InputError` naming ``what``."""
    if not osp.isfile(path):
        state = 'is a folder, not a file' if osp.isdir(path) else \
            'does not exist'
        raise InputError(f"{what} '{path}' {state}.")
    return path


def check_checkpoint(path: str, what: str = 'checkpoint file') -> str:
    """A local file that starts like a PyTorch checkpoint (URIs pass)."""
    if '://' not in path:
        check_file(path, what)
        if not path.endswith('.safetensors'):
            check_torch_file(path)
    return path


def check_data_roots(cfg: Config, loaders: Sequence[str]) -> None:
    """The ``data_root`` (and ``ann_file``) of each loader's dataset(s)."""
    for loader in loaders:
        dataset = (cfg.get(loader, None) or {}).get('dataset', None)
        while isinstance(dataset, dict):  # through dataset wrappers
            root, ann = dataset.get('data_root'), dataset.get('ann_file')
            if root and not osp.isdir(root):
                state = 'is not a folder' if osp.exists(root) else \
                    'does not exist'
                raise InputError(
                    f"{loader}.dataset.data_root '{root}' {state} (working "
                    f"directory '{os.getcwd()}'). Point it at the "
                    'dataset folder (holding imgs/ and the annotation JSON), '
                    f'e.g. with --cfg-options {loader}.dataset.data_root=PATH,'
                    ' or create the demo data with tools/make_demo_data.py.')
            if root and isinstance(ann, str) and ann and not osp.isfile(
                    osp.join(root, ann)):
                raise InputError(f"{loader}.dataset.ann_file "
                                 f"'{osp.join(root, ann)}' does not exist.")
            dataset = dataset.get('dataset', None)


def check_writable_dir(folder: str, what: str) -> None:
    """:class:`InputError` unless ``folder`` is or can be made writable."""
    probe = osp.abspath(folder)
    while not osp.exists(probe):
        probe = osp.dirname(probe)
    if not osp.isdir(probe):
        raise InputError(f"{what}: '{probe}' is a file, not a folder.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{what}: cannot write to the folder '{probe}' "
                         '(permission denied or a read-only file system).')


def check_work_dir(work_dir: str) -> str:
    """A work dir that is writable or can be created."""
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise InputError(f"work dir '{work_dir}' is a file, not a folder.")
    check_writable_dir(work_dir, f"work dir '{work_dir}'")
    return work_dir


def check_output_path(path: str, suffixes: Sequence[str], what: str) -> str:
    """An output file with one of ``suffixes`` in a writable folder."""
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        raise InputError(f"{what} '{path}' must be a "
                         f"{' or '.join(suffixes)} file.")
    if osp.isdir(path):
        raise InputError(f"{what} '{path}' is a folder; give a file name.")
    check_writable_dir(osp.dirname(osp.abspath(path)), f"{what} '{path}'")
    return path


def report_user_error(prog: str, error: BaseException, debug: bool) -> None:
    """Print ``error`` as one paragraph (re-raise it under ``--debug``)."""
    if debug:
        raise error
    message = error.args[0] if isinstance(error, KeyError) and error.args \
        else error
    print(f'{prog}: error: {message}', file=sys.stderr)

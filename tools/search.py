#!/usr/bin/env python
"""Search a folder of person images (or a saved index) with text descriptions.

Usage::

    python tools/search.py CONFIG CKPT --gallery DIR_OR_INDEX \\
        --query "a woman in a red coat and black trousers" [--query ...] \\
        [--topk 10] [--save-index PATH] [--out result.png] [--labels FILE] \\
        [--query-pid PID [--query-pid PID ...]] [--device cpu]
        [--cfg-options KEY=VALUE ...] [--allow-partial-checkpoint] [--debug]

``--gallery`` is a folder (scanned recursively for images and encoded) or an
index file written earlier with ``--save-index`` (reused when it was made by
the same config and checkpoint and no image changed). The ranked list is
printed (rank, score, label, path) and a picture with the query and its top-k
images is written to ``--out``. With ``--labels`` (a JSON ``{image path:
pid}`` or a CUHK-PEDES / ICFG-PEDES / RSTPReid annotation file) and
``--query-pid``, hits of the query's identity are framed green and others red.

Every argument (config, checkpoint, gallery, queries, labels, output paths)
is checked before the model is built or an image encoded; a mistake prints
one paragraph and exits with status 2 (a traceback only with ``--debug``).
A checkpoint that does not fit the config's model is refused unless
``--allow-partial-checkpoint`` is given.
"""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence

from mmengine.config import Config, DictAction

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

from _common import (USER_ERRORS, InputError,  # noqa: E402
                     add_partial_and_debug_args, check_checkpoint, check_file,
                     check_output_path, report_user_error)

PROG = 'tools/search.py'

__all__ = ['parse_args', 'main', 'format_results']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Text-to-image person search over a folder of images.')
    parser.add_argument('config', help='model config file ("-" with --onnx)')
    parser.add_argument('checkpoint', help='model checkpoint file ("-" with --onnx)')
    parser.add_argument('--gallery', required=True,
                        help='image folder (scanned recursively) or an index '
                        'file written by --save-index')
    parser.add_argument('--query', action='append', required=True,
                        help='description of the person (repeat for more '
                        'queries)')
    parser.add_argument('--topk', type=int, default=10,
                        help='hits per query (default 10)')
    parser.add_argument('--save-index', metavar='PATH',
                        help='save the gallery index here (e.g. gallery.npz)')
    parser.add_argument('--out', default='search_result.png',
                        help='picture of the results (default '
                        'search_result.png); "none" to skip it')
    parser.add_argument('--labels', metavar='FILE',
                        help='identity labels: JSON {image path: pid} or a '
                        'PEDES annotation file (paths relative to the '
                        'gallery folder or its imgs/)')
    parser.add_argument('--query-pid', action='append', default=None,
                        help='identity the query describes (once for all '
                        'queries or once per query); marks matches')
    parser.add_argument('--device', default='cpu',
                        help='torch device, e.g. cpu or cuda:0')
    parser.add_argument('--batch-size', type=int, default=64,
                        help='images encoded per forward pass (default 64)')
    parser.add_argument('--num-workers', type=int, default=0,
                        help='image loading worker processes (default 0)')
    parser.add_argument('--backend', default='torch',
                        choices=['torch', 'faiss'],
                        help='ranking backend (faiss only when installed)')
    parser.add_argument('--onnx', metavar='EXPORT_DIR',
                        help='encode with an export folder of tools/export.py '
                        '(ONNX Runtime; CONFIG and CHECKPOINT are then not '
                        'loaded); same index files and rankings')
    parser.add_argument('--no-progress', action='store_true',
                        help='hide the progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. '
                        'model.data_preprocessor.tokenizer=path/to/bert')
    add_partial_and_debug_args(parser)
    args = parser.parse_args(argv)
    if args.topk < 1:
        parser.error(f'--topk must be >= 1, got {args.topk}')
    if args.query_pid is not None and len(args.query_pid) not in (
            1, len(args.query)):
        parser.error(f'--query-pid was given {len(args.query_pid)} times for '
                     f'{len(args.query)} queries; give it once (for all) or '
                     'once per query')
    return args


def _pid(value: str):
    """``'12'`` -> 12 (labels in PEDES files are ints); other text stays."""
    value = value.strip()
    return int(value) if value.lstrip('-').isdigit() else value


def format_results(queries: Sequence[str], results: Sequence[Sequence],
                   query_pids: Sequence) -> str:
    """The printed ranking: one table per query.

    Args:
        queries: Query texts.
        results: Per query, its hits.
        query_pids: Per query, its identity or None.

    Returns:
        The text.
    """
    lines: List[str] = []
    for q, (query, hits, qpid) in enumerate(zip(queries, results, query_pids)):
        head = f'Query {q + 1}: {query}'
        if qpid is not None:
            head += f'  [pid {qpid}]'
        lines.append(head)
        match_col = qpid is not None
        lines.append(f'{"rank":>5}  {"score":>7}  {"label":>8}  ' +
                     ('match  ' if match_col else '') + 'path')
        for hit in hits:
            label = '-' if hit.label is None else str(hit.label)
            row = f'{hit.rank:>5}  {hit.score:>7.4f}  {label:>8}  '
            if match_col:
                mark = '-' if hit.label is None else (
                    'yes' if hit.label == qpid else 'no')
                row += f'{mark:<5}  '
            lines.append(row + hit.path)
        lines.append('')
    return '\n'.join(lines)


def check_inputs(args: argparse.Namespace) -> None:
    """Check every argument before the model is built.

    Args:
        args: Parsed arguments.

    Raises:
        InputError: An argument is unusable (the message names it).
    """
    if args.onnx:
        if not osp.isdir(args.onnx):
            raise InputError(
                f'--onnx {args.onnx!r} is not a folder (expected the export '
                'folder written by tools/export.py).')
        if args.labels:
            raise InputError('--labels is not supported with --onnx.')
    else:
        check_file(args.config, 'config file')
        check_checkpoint(args.checkpoint)
    for i, query in enumerate(args.query):
        if not query.strip():
            raise InputError(
                f'Query texts[{i}] is empty: describe the person, e.g. '
                '"a woman in a red coat and black trousers".')
    if not osp.exists(args.gallery):
        raise InputError(
            f'--gallery {args.gallery!r} does not exist (expected an image '
            'folder or an index file).')
    if args.labels:
        check_file(args.labels, '--labels file')
    if args.save_index:
        check_output_path(args.save_index, (), '--save-index')
    if args.out and args.out.lower() != 'none':
        check_output_path(args.out, (), '--out')


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the search; return the exit status (2 on a clear input error)."""
    args = parse_args(argv)
    try:
        check_inputs(args)
    except USER_ERRORS as err:
        report_user_error(PROG, err, args.debug)
        return 2
    from mdrl_plugin.apis import (IndexFormatError, IndexMismatchError,
                                  PersonSearcher, StaleIndexError,
                                  draw_search_results)

    def show_warning(message, category, filename, lineno, file=None,
                     line=None):
        print(f'warning: {message}', file=sys.stderr)

    warnings.showwarning = show_warning
    try:
        config = args.config
        if args.cfg_options:
            config = Config.fromfile(config)
            config.merge_from_dict(args.cfg_options)
        if args.onnx:
            from mdrl_deploy import OrtSearcher
            searcher = OrtSearcher(args.onnx, batch_size=args.batch_size,
                                   progress=not args.no_progress)
        else:
            searcher = PersonSearcher(
                config, args.checkpoint, device=args.device,
                batch_size=args.batch_size, num_workers=args.num_workers,
                backend=args.backend, progress=not args.no_progress,
                allow_partial_checkpoint=args.allow_partial_checkpoint)
        if osp.isdir(args.gallery):
            print(f'Encoding the images of {args.gallery} ...',
                  file=sys.stderr)
            searcher.build_index(args.gallery, labels=args.labels)
        else:
            searcher.load_index(args.gallery)
            print(f'Loaded index {args.gallery} ({searcher.num_images} '
                  'images).', file=sys.stderr)
            if args.labels:
                searcher.set_labels(args.labels)
        if args.save_index:
            path = searcher.save_index(args.save_index)
            print(f'Saved the index of {searcher.num_images} images to {path}',
                  file=sys.stderr)
        results = searcher.search(args.query, topk=args.topk)
    except (FileNotFoundError, ValueError, KeyError, ImportError,
            IndexFormatError, IndexMismatchError,
            StaleIndexError) + USER_ERRORS as err:
        report_user_error(PROG, err, args.debug)
        return 2

    if args.query_pid is None:
        query_pids = [None] * len(args.query)
    elif len(args.query_pid) == 1:
        query_pids = [_pid(args.query_pid[0])] * len(args.query)
    else:
        query_pids = [_pid(p) for p in args.query_pid]
    if any(p is not None for p in query_pids) and \
            (searcher.index.labels is None):
        print('warning: --query-pid needs gallery labels (--labels FILE) to '
              'mark matches', file=sys.stderr)
    print(format_results(args.query, results, query_pids))
    if args.out and args.out.lower() != 'none':
        out_dir = osp.dirname(osp.abspath(args.out))
        os.makedirs(out_dir, exist_ok=True)
        draw_search_results(args.query, results, args.out,
                            query_labels=query_pids)
        print(f'Wrote {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

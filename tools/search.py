#!/usr/bin/env python
"""Search a folder of person images (or a saved index) with text
descriptions: ``python tools/search.py CONFIG CKPT --gallery DIR --query
TEXT ...`` (``--help``, docs/search.md). The ranking is printed and drawn to
``--out``; with ``--labels`` and ``--query-pid``, matches are framed green."""
import argparse
import os
import os.path as osp
import sys
import warnings
from typing import List, Optional, Sequence

from mmengine.config import Config, DictAction

from mdrl_deploy import OrtSearcher, check_queries, read_labels
from mdrl_deploy.search import Label

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/_common.py

from _common import (  # noqa: E402
    USER_ERRORS,
    InputError,
    add_partial_and_debug_args,
    check_checkpoint,
    check_file,
    check_output_path,
    check_writable_dir,
    report_user_error,
)

PROG = 'tools/search.py'

__all__ = ['parse_args', 'check_inputs', 'format_results', 'main']


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(
        description='Text-to-image person search over a folder of images.')
    p.add_argument('config', help='model config file ("-" with --onnx)')
    p.add_argument('checkpoint', help='checkpoint file ("-" with --onnx)')
    p.add_argument('--gallery', required=True,
                   help='image folder or an index folder (--save-index)')
    p.add_argument('--query', action='append', required=True,
                   help='description of the person (repeat for more)')
    p.add_argument('--topk', type=int, default=10, help='hits per query')
    p.add_argument('--save-index', metavar='FOLDER',
                   help='save the index (a folder) here')
    p.add_argument('--out', default='search_result.png',
                   help='picture of the results ("none": no picture)')
    p.add_argument('--labels', metavar='FILE', help='identity labels: JSON '
                   '{image path: pid}, paths relative to the gallery folder')
    p.add_argument('--query-pid', action='append', default=None,
                   help='identity of the queries (once, or once per query)')
    for flag, default in (('--device', 'cpu'), ('--batch-size', 64),
                          ('--num-workers', 0)):
        p.add_argument(flag, default=default, type=type(default))
    p.add_argument('--onnx', metavar='EXPORT_DIR', help='encode with an '
                   'export folder of tools/export.py (ONNX Runtime)')
    p.add_argument('--no-progress', action='store_true')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    add_partial_and_debug_args(p)
    args = p.parse_args(argv)
    if args.topk < 1:
        p.error(f'--topk must be >= 1, got {args.topk}')
    if args.onnx and (unused := [flag for flag, given in (
            ('--device', args.device != 'cpu'),
            ('--cfg-options', bool(args.cfg_options)),
            ('--allow-partial-checkpoint', args.allow_partial_checkpoint))
            if given]):
        p.error(f'{", ".join(unused)}: not used with --onnx (ONNX Runtime '
                'encodes on the CPU with the export\'s own settings)')
    if args.query_pid is not None and len(args.query_pid) not in (
            1, len(args.query)):
        p.error(f'--query-pid was given {len(args.query_pid)} times for '
                f'{len(args.query)} queries; give it once (for all) or once '
                'per query')
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """Check every argument before the model is built (InputError or
    ValueError naming it)."""
    if args.onnx and not osp.isdir(args.onnx):
        raise InputError(f'--onnx {args.onnx!r} is not a folder (expected the '
                         'export folder written by tools/export.py).')
    elif not args.onnx:
        check_file(args.config, 'config file')
        check_checkpoint(args.checkpoint)
    check_queries(args.query)
    if not osp.exists(args.gallery):
        raise InputError(f'--gallery {args.gallery!r} does not exist '
                         '(expected an image folder or an index folder).')
    if args.labels:  # read now: a bad file fails before the model loads
        read_labels(check_file(args.labels, '--labels file'), None)
    if args.out and args.out.lower() != 'none':
        check_output_path(args.out, (), '--out')
    if args.save_index:  # absent, or an index folder to replace
        what = f"--save-index '{args.save_index}'"
        if osp.lexists(args.save_index) and \
                not osp.isfile(osp.join(args.save_index, 'meta.json')):
            raise InputError(f'{what} exists and is not an index folder; '
                             'choose a new name.')
        check_writable_dir(osp.dirname(osp.abspath(args.save_index)), what)


def format_results(queries: Sequence[str], results: Sequence[Sequence],
                   query_labels: Sequence[Optional[Label]]) -> str:
    """The ranking as text: per query a head line and one row per hit,
    ``rank  score  label  [match]  path``; the match column (``yes``/``no``/
    ``-``) appears when the query's identity is known."""
    lines: List[str] = []
    for q, (query, hits, qlab) in enumerate(zip(queries, results,
                                                query_labels)):
        lines.append(f'Query {q + 1}: {query}' +
                     ('' if qlab is None else f'  [pid {qlab}]'))
        lines.append(f'{"rank":>5}  {"score":>7}  {"label":>8}  ' +
                     ('' if qlab is None else 'match  ') + 'path')
        for hit in hits:
            label = '-' if hit.label is None else str(hit.label)
            row = f'{hit.rank:>5}  {hit.score:>7.4f}  {label:>8}  '
            if qlab is not None:
                mark = '-' if hit.label is None else (
                    'yes' if hit.label == qlab else 'no')
                row += f'{mark:<5}  '
            lines.append(row + hit.path)
        lines.append('')
    return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the search; return the exit status (2 on a clear input error)."""
    args = parse_args(argv)
    try:
        check_inputs(args)
    except (ValueError, ) + USER_ERRORS as err:
        report_user_error(PROG, err, args.debug)
        return 2
    from mdrl_plugin.apis import PersonSearcher, draw_search_results

    warnings.showwarning = lambda message, *a, **k: print(
        f'warning: {message}', file=sys.stderr)
    try:
        if args.onnx:
            searcher = OrtSearcher(args.onnx, batch_size=args.batch_size,
                                   num_workers=args.num_workers,
                                   progress=not args.no_progress)
        else:
            config = Config.fromfile(args.config)
            config.merge_from_dict(args.cfg_options or {})
            searcher = PersonSearcher(
                config, args.checkpoint, device=args.device,
                batch_size=args.batch_size, num_workers=args.num_workers,
                progress=not args.no_progress,
                allow_partial_checkpoint=args.allow_partial_checkpoint)
        if osp.isdir(args.gallery) and \
                not osp.isfile(osp.join(args.gallery, 'meta.json')):
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
            os.makedirs(osp.dirname(osp.abspath(args.save_index)),
                        exist_ok=True)
            path = searcher.save_index(args.save_index)
            print(f'Saved the index of {searcher.num_images} images to {path}',
                  file=sys.stderr)
        results = searcher.search(args.query, topk=args.topk)
    except (FileNotFoundError, ValueError, KeyError, ImportError) + \
            USER_ERRORS as err:
        report_user_error(PROG, err, args.debug)
        return 2

    # PEDES ids are ints: '12' is 12, other text stays text
    pids = [int(p) if p.strip().lstrip('-').isdigit() else p.strip()
            for p in args.query_pid or []]
    query_pids = pids * len(args.query) if len(pids) == 1 else \
        pids or [None] * len(args.query)
    if pids and searcher.index.labels is None:
        print('warning: --query-pid needs gallery labels (--labels FILE) to '
              'mark matches', file=sys.stderr)
    print(format_results(args.query, results, query_pids))
    if args.out and args.out.lower() != 'none':
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        draw_search_results(args.query, results, args.out,
                            query_labels=query_pids)
        print(f'Wrote {args.out}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())

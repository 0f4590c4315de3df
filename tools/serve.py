#!/usr/bin/env python
"""Serve a person-search web page and JSON API over a gallery index:
``python tools/serve.py --index DIR --model EXPORT_DIR`` (torch-free, ONNX
Runtime) or ``--model CKPT --config CONFIG``; ``--gallery DIR`` indexes a
missing ``--index`` first. Binds to 127.0.0.1 by default (docs/deploy.md).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

__all__ = ['parse_args', 'build_searcher', 'main']

#: the server's limits, as options, with their lowest accepted values
LIMITS = dict(max_topk=1, max_query_chars=1, max_running=1, max_waiting=0)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    from mdrl_deploy import server
    p = argparse.ArgumentParser(
        description='Serve a text-based person search page over an index.')
    p.add_argument('--index', required=True,
                   help='index folder (tools/search.py --save-index)')
    p.add_argument('--model', required=True,
                   help='export folder (tools/export.py) or checkpoint')
    p.add_argument('--config', help='model config (with a checkpoint)')
    p.add_argument('--gallery', help='image folder to index when --index '
                   'does not exist yet')
    p.add_argument('--host', default='127.0.0.1', help='address to bind')
    p.add_argument('--port', type=int, default=8000)
    p.add_argument('--allowed-host', action='append', metavar='NAME',
                   help='accepted Host header (repeat; default: from --host)')
    p.add_argument('--threads', type=int, default=None,
                   help='ONNX Runtime threads per query')
    for name in LIMITS:
        p.add_argument('--' + name.replace('_', '-'), type=int,
                       default=getattr(server, name.upper()))
    args = p.parse_args(argv)
    if not osp.isdir(args.model) and not args.config:
        p.error('--model is not an export folder, so it is taken as a '
                'checkpoint and needs --config CONFIG')
    if not 1 <= args.port <= 65535:
        p.error(f'--port must be 1..65535, got {args.port}')
    for name, low in LIMITS.items():
        if getattr(args, name) < low:
            p.error(f'--{name.replace("_", "-")} must be >= {low}, got '
                    f'{getattr(args, name)}')
    args.allowed_host = args.allowed_host or \
        server.allowed_hosts_for(args.host)
    return args


def build_searcher(args: argparse.Namespace):
    """The searcher with its index (built and saved first if needed)."""
    if osp.isdir(args.model):
        from mdrl_deploy import OrtSearcher
        searcher = OrtSearcher(args.model, num_threads=args.threads,
                               progress=True)
    else:
        from mdrl_plugin.apis import PersonSearcher
        searcher = PersonSearcher(args.config, args.model)
    if not osp.exists(args.index) and args.gallery:
        print(f'Encoding {args.gallery} ...', file=sys.stderr)
        searcher.build_index(args.gallery)
        searcher.save_index(args.index)
        print(f'Saved the index to {args.index}', file=sys.stderr)
    else:
        searcher.load_index(args.index)
    return searcher


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start the server; returns the exit status (2 on an input error)."""
    args = parse_args(argv)
    try:
        searcher = build_searcher(args)
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    import uvicorn

    from mdrl_deploy.server import create_app, host_header_name
    app = create_app(searcher, allowed_hosts=args.allowed_host,
                     **{k: getattr(args, k) for k in LIMITS})
    if '*' in args.allowed_host:
        print('warning: any Host header is accepted; name this server with '
              '--allowed-host to block DNS rebinding', file=sys.stderr)
    print(f'Serving {searcher.num_images} images at '
          f'http://{host_header_name(args.host)}:{args.port}/',
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level='warning',
                access_log=False)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    sys.exit(main())

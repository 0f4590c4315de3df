"""A search page and JSON API over a gallery index (FastAPI): ``GET /``,
``POST /search``, ``GET /images/<indexed file in the gallery>``, ``GET
/health``; limits and answers: docs/deploy.md ("Serving")."""
import logging
import os
import os.path as osp
import threading
import time
import urllib.parse
from importlib import resources
from typing import Any, Dict, Optional, Sequence

MAX_QUERY_CHARS = 500  #: Longest accepted query (characters).
MAX_TOPK = 100  #: Largest accepted ``topk``.
MAX_BODY_BYTES = 16 * 1024  #: Largest accepted request body.
MAX_RUNNING = 2  #: Searches computed at once (each in a worker thread).
MAX_WAITING = 64  #: Searches that may wait for a free slot; more get 503.
LOCAL_HOSTS = ('127.0.0.1', 'localhost')  #: ``Host`` names of loopback.
_EXAMPLE = '{"query": "a man in a red shirt", "topk": 10}'
_logger = logging.getLogger(__name__)


def allowed_hosts_for(bind_host: str) -> list:
    """``Host`` header values to accept for a server bound to ``bind_host``.

    Args:
        bind_host: The address the server binds to.

    Returns:
        Both local names for loopback, ``['*']`` (any) for a wildcard,
        else ``bind_host`` as a ``Host`` header writes it.
    """
    if bind_host in ('0.0.0.0', '::', '[::]', ''):
        return ['*']
    host = host_header_name(bind_host)
    if host in LOCAL_HOSTS:
        return list(LOCAL_HOSTS)
    return [host, 'localhost'] if host == '[::1]' else [host]


def host_header_name(host: str) -> str:
    """``host`` as a ``Host`` header or a URL names it: an IPv6 address in
    brackets (``[::1]``), anything else as it is."""
    return f'[{host}]' if ':' in host and not host.startswith('[') else host


def _explain(error: Dict[str, Any], max_query_chars: int,
             max_topk: int) -> tuple:
    """``(status, message)`` of the first Pydantic error of a body."""
    import json
    kind, loc = error['type'], error.get('loc', ())
    if kind == 'json_invalid':
        return 400, f'the body must be JSON: {_EXAMPLE}'
    if not loc or kind in ('model_type', 'model_attributes_type'):
        return 422, ('the body must be a JSON object with "query" and '
                     'optional "topk"')
    if kind == 'extra_forbidden':
        return 422, (f'unknown field {str(loc[0])!r}: the body takes "query" '
                     'and optional "topk"')
    if loc[0] == 'query':
        if kind == 'string_too_long':
            return 422, (f'"query" is {len(error["input"])} characters long; '
                         f'at most {max_query_chars} are accepted')
        return 422, '"query" must be a non-empty text describing the person'
    return 422, (f'"topk" must be an integer from 1 to {max_topk}, got '
                 f'{json.dumps(error.get("input"))[:40]}')


def create_app(searcher: Any,
               max_query_chars: int = MAX_QUERY_CHARS,
               max_topk: int = MAX_TOPK,
               title: Optional[str] = None,
               allowed_hosts: Optional[Sequence[str]] = None,
               max_running: int = MAX_RUNNING,
               max_waiting: int = MAX_WAITING):
    """Build the FastAPI application over a searcher with a loaded index.

    Args:
        searcher: A searcher with an index; its ``search`` is called from
            several threads at once.
        max_query_chars: Longest accepted query.
        max_topk: Largest accepted ``topk``.
        title: Text under the page heading (default: gallery size).
        allowed_hosts: Accepted ``Host`` names (default :data:`LOCAL_HOSTS`;
            ``['*']``: any), see :func:`allowed_hosts_for`.
        max_running: Searches computed at once.
        max_waiting: Searches that may wait for a slot; more get 503.

    Returns:
        The ``fastapi.FastAPI`` app.
    """
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, constr
    from starlette.exceptions import HTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    index = searcher.index
    if index is None:
        raise ValueError('create_app needs a searcher with an index: call '
                         'build_index or load_index first.')
    if max_running < 1 or max_waiting < 0:
        raise ValueError(f'max_running must be >= 1 and max_waiting >= 0, '
                         f'got {max_running} and {max_waiting}')
    root = index.root or osp.commonpath([osp.dirname(p) for p in index.paths])
    real_root = osp.realpath(root)
    prefix = root.rstrip(os.sep) + os.sep

    def rel_path(path: str) -> str:
        rel = path[len(prefix):] if path.startswith(prefix) else \
            osp.relpath(path, root)
        return rel.replace(os.sep, '/')

    # the index's own path strings: no copy of a million paths
    indexed = set(index.paths)
    page = (resources.files('mdrl_deploy') / 'static' /
            'search.html').read_text(encoding='utf-8')

    class SearchRequest(BaseModel):
        """``{"query": non-empty text, "topk": 1..max_topk}``, nothing else."""
        model_config = ConfigDict(extra='forbid', strict=True)
        query: constr(strip_whitespace=True, min_length=1,
                      max_length=max_query_chars)
        topk: int = Field(10, ge=1, le=max_topk)

    load = dict(admitted=0, running=0, peak_running=0)
    lock = threading.Lock()
    limiter = []  # one anyio.CapacityLimiter, made in the event loop

    def run_search(query: str, topk: int):
        with lock:
            load['running'] += 1
            load['peak_running'] = max(load['peak_running'], load['running'])
        try:
            start = time.perf_counter()
            hits = searcher.search(query, topk)[0]
            return hits, (time.perf_counter() - start) * 1000
        finally:
            with lock:
                load['running'] -= 1

    app = FastAPI(title='MDRL person search', docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[
        host_header_name(h) for h in allowed_hosts or LOCAL_HOSTS])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse(dict(error=str(exc.detail)), exc.status_code,
                            exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        _logger.error('internal error on %s', request.url.path,
                      exc_info=exc)
        return JSONResponse(
            dict(error=f'internal error ({type(exc).__name__})'), 500)

    @app.get('/', response_class=HTMLResponse)
    def home() -> str:
        return page

    @app.get('/health')
    def health() -> dict:
        fp = getattr(searcher, 'fingerprint', {}) or {}
        return dict(status='ok', num_images=len(index),
                    feature_dim=index.feature_dim,
                    checkpoint_sha256=str(
                        fp.get('checkpoint_sha256', ''))[:12],
                    gallery=osp.basename(root.rstrip(os.sep)) or root,
                    title=title, max_query_chars=max_query_chars,
                    max_topk=max_topk,
                    searches=dict(running=load['running'],
                                  waiting=load['admitted'] - load['running'],
                                  peak_running=load['peak_running'],
                                  max_running=max_running,
                                  max_waiting=max_waiting))

    @app.post('/search')
    async def search(request: Request):
        ctype = request.headers.get('content-type', '')
        if ctype.split(';')[0].strip().lower() != 'application/json':
            raise HTTPException(415, 'the body must be JSON with '
                                'Content-Type: application/json, got '
                                f'{ctype[:60]!r}')
        too_large = f'request body larger than {MAX_BODY_BYTES} bytes'
        length = request.headers.get('content-length')
        if length is not None and (not length.isdigit() or
                                   int(length) > MAX_BODY_BYTES):
            raise HTTPException(413, too_large)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise HTTPException(413, too_large)
        try:
            body = SearchRequest.model_validate_json(bytes(raw))
        except ValidationError as err:
            raise HTTPException(*_explain(err.errors()[0], max_query_chars,
                                          max_topk)) from None
        if load['admitted'] >= max_running + max_waiting:
            raise HTTPException(503, f'busy: {load["admitted"]} searches '
                                'running or waiting; try again in a second',
                                headers={'Retry-After': '1'})
        if not limiter:
            limiter.append(anyio.CapacityLimiter(max_running))
        load['admitted'] += 1
        try:  # the body is checked: what the searcher raises is a 500
            hits, ms = await anyio.to_thread.run_sync(
                run_search, body.query, body.topk, limiter=limiter[0])
        finally:
            load['admitted'] -= 1
        results = []
        for hit in hits:
            rel = rel_path(hit.path)
            results.append(dict(
                rank=hit.rank, score=round(float(hit.score), 6), path=rel,
                name=osp.basename(rel), label=hit.label,
                image_url='images/' + urllib.parse.quote(rel)))
        return dict(query=body.query, topk=body.topk, milliseconds=ms,
                    results=results)

    @app.get('/images/{rel:path}')
    def image(rel: str):
        path = prefix + rel.replace('/', os.sep)
        if path not in indexed or not osp.isfile(path) or \
                osp.commonpath([osp.realpath(path), real_root]) != real_root:
            raise HTTPException(404, 'no such image in the gallery')
        return FileResponse(path)

    return app

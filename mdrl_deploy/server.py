"""A search web page and JSON API over a gallery index (FastAPI).

Routes:

* ``GET /``: the page (type a description, see the top-k images with score
  and file name); ``/?q=...&topk=...`` searches on load;
* ``POST /search`` with ``{"query": str, "topk": int}``: the ranking as JSON;
* ``GET /images/<path relative to the gallery>``: an indexed image;
* ``GET /health``: ``{"status": "ok", "num_images": N, ...}``.

Bad input gets a JSON ``{"error": ...}`` with status 400/404/413/422, never
a traceback. Only files of the index are served, and only when their real
path (symlinks resolved) lies inside the gallery folder.
"""
import html
import os
import os.path as osp
import urllib.parse
from typing import Any, Dict, Optional

__all__ = ['create_app', 'MAX_QUERY_CHARS', 'MAX_TOPK', 'MAX_BODY_BYTES']

#: Longest accepted query (characters).
MAX_QUERY_CHARS = 500
#: Largest accepted ``topk``.
MAX_TOPK = 100
#: Largest accepted request body.
MAX_BODY_BYTES = 16 * 1024

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>MDRL person search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
form{display:flex;gap:.5em;flex-wrap:wrap;margin-bottom:1em}
#query{flex:1;min-width:20em;font-size:1.1em;padding:.4em}
#topk{width:4em;font-size:1.1em}
button{font-size:1.1em;padding:.4em 1em}
#results{display:flex;flex-wrap:wrap;gap:.8em}
figure{margin:0;background:#fff;border:1px solid #ddd;padding:.4em;
 text-align:center;width:9em}
figure img{height:12em;max-width:100%;object-fit:contain;image-rendering:pixelated}
figcaption{font-size:.8em;word-break:break-all}
.score{font-weight:bold}
#status{color:#555;margin-bottom:.8em;min-height:1.2em}
.error{color:#b00}
</style></head>
<body>
<h1>MDRL person search</h1>
<p>__INFO__</p>
<form id="form">
 <input id="query" name="query" type="text" maxlength="__MAXCHARS__"
  placeholder="a woman in a red coat with a black backpack" autofocus>
 <label>top-k <input id="topk" name="topk" type="number" min="1"
  max="__MAXTOPK__" value="10"></label>
 <button id="submit" type="submit">Search</button>
</form>
<div id="status"></div>
<div id="results"></div>
<script>
const form = document.getElementById('form');
const statusBox = document.getElementById('status');
const results = document.getElementById('results');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  statusBox.textContent = 'Searching...';
  statusBox.className = '';
  results.replaceChildren();
  const body = {query: document.getElementById('query').value,
                topk: parseInt(document.getElementById('topk').value, 10)};
  let reply;
  try {
    const response = await fetch('search', {method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify(body)});
    reply = await response.json();
  } catch (err) {
    reply = {error: String(err)};
  }
  if (reply.error) {
    statusBox.textContent = reply.error;
    statusBox.className = 'error';
    return;
  }
  statusBox.textContent = reply.results.length + ' results for "' +
    reply.query + '" (' + reply.milliseconds.toFixed(1) + ' ms)';
  for (const hit of reply.results) {
    const fig = document.createElement('figure');
    fig.className = 'hit';
    fig.dataset.rank = hit.rank;
    fig.dataset.path = hit.path;
    const img = document.createElement('img');
    img.src = hit.image_url;
    img.alt = hit.name;
    const cap = document.createElement('figcaption');
    const score = document.createElement('div');
    score.className = 'score';
    score.textContent = '#' + hit.rank + '  ' + hit.score.toFixed(3);
    const name = document.createElement('div');
    name.className = 'name';
    name.textContent = hit.path;
    cap.append(score, name);
    fig.append(img, cap);
    results.append(fig);
  }
});
// /?q=...&topk=... fills the form and searches (links, screenshots)
const params = new URLSearchParams(window.location.search);
if (params.get('q')) {
  document.getElementById('query').value = params.get('q');
  if (params.get('topk')) document.getElementById('topk').value = params.get('topk');
  form.requestSubmit();
}
</script>
</body></html>
"""


def _error(status: int, message: str):
    from fastapi.responses import JSONResponse
    return JSONResponse(status_code=status, content=dict(error=message))


def create_app(searcher: Any,
               max_query_chars: int = MAX_QUERY_CHARS,
               max_topk: int = MAX_TOPK,
               title: Optional[str] = None):
    """Build the FastAPI application over a searcher with a loaded index.

    Args:
        searcher: :class:`~mdrl_deploy.OrtSearcher` or
            ``mdrl_plugin.apis.PersonSearcher`` with an index (built or
            loaded); only ``search``, ``index`` and ``fingerprint`` are used.
        max_query_chars: Longest accepted query.
        max_topk: Largest accepted ``topk``.
        title: Text under the page heading (default: gallery size).

    Returns:
        The ``fastapi.FastAPI`` app.
    """
    import time

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse
    from starlette.exceptions import HTTPException

    index = searcher.index
    if index is None:
        raise ValueError('create_app needs a searcher with an index: call '
                         'build_index or load_index first.')
    root = index.root or osp.commonpath([osp.dirname(p) for p in index.paths])
    real_root = osp.realpath(root)
    # relative path -> file, for the files whose real path is in the gallery
    servable: Dict[str, str] = {}
    rel_of: Dict[int, str] = {}
    for i, path in enumerate(index.paths):
        rel = osp.relpath(path, root).replace(os.sep, '/')
        rel_of[i] = rel
        real = osp.realpath(path)
        if osp.commonpath([real, real_root]) == real_root:
            servable[rel] = path
    info = title or (f'{len(index)} gallery images in '
                     f'{html.escape(osp.basename(root) or root)}')
    page = (_PAGE.replace('__INFO__', html.escape(info))
            .replace('__MAXCHARS__', str(max_query_chars))
            .replace('__MAXTOPK__', str(max_topk)))

    app = FastAPI(title='MDRL person search', docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return _error(422, 'invalid request')

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        return _error(500, f'internal error ({type(exc).__name__})')

    @app.get('/', response_class=HTMLResponse)
    def home() -> str:
        return page

    @app.get('/health')
    def health() -> dict:
        fp = getattr(searcher, 'fingerprint', {}) or {}
        return dict(status='ok', num_images=len(index),
                    feature_dim=index.feature_dim,
                    checkpoint_sha256=str(fp.get('checkpoint_sha256', ''))[:12])

    @app.post('/search')
    async def search(request: Request):
        length = request.headers.get('content-length')
        if length is not None and (not length.isdigit() or
                                   int(length) > MAX_BODY_BYTES):
            return _error(413, f'request body larger than {MAX_BODY_BYTES} '
                          'bytes')
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f'request body larger than {MAX_BODY_BYTES} '
                          'bytes')
        import json
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'the body must be JSON: {"query": "a man in a '
                          'red shirt", "topk": 10}')
        if not isinstance(body, dict):
            return _error(400, 'the body must be a JSON object with "query" '
                          'and optional "topk"')
        query = body.get('query')
        if not isinstance(query, str) or not query.strip():
            return _error(400, '"query" must be a non-empty text describing '
                          'the person')
        if len(query) > max_query_chars:
            return _error(400, f'"query" is {len(query)} characters long; at '
                          f'most {max_query_chars} are accepted')
        topk = body.get('topk', 10)
        if isinstance(topk, bool) or not isinstance(topk, int) or \
                not 1 <= topk <= max_topk:
            return _error(400, f'"topk" must be an integer from 1 to '
                          f'{max_topk}, got {json.dumps(topk)[:40]}')
        from starlette.concurrency import run_in_threadpool
        start = time.perf_counter()
        hits = (await run_in_threadpool(searcher.search, query.strip(),
                                        topk))[0]
        ms = (time.perf_counter() - start) * 1000
        results = []
        for hit in hits:
            rel = rel_of[hit.index]
            results.append(dict(
                rank=hit.rank, score=round(float(hit.score), 6), path=rel,
                name=osp.basename(rel), label=hit.label,
                image_url='images/' + urllib.parse.quote(rel)))
        return dict(query=query.strip(), topk=topk, milliseconds=ms,
                    results=results)

    @app.get('/images/{rel:path}')
    def image(rel: str):
        path = servable.get(rel)
        if path is None or not osp.isfile(path) or \
                osp.commonpath([osp.realpath(path), real_root]) != real_root:
            return _error(404, 'no such image in the gallery')
        return FileResponse(path)

    return app

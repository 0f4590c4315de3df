"""The FastAPI search server: page, JSON API, limits, errors, concurrency."""
import asyncio
import http.client
import json
import os
import shutil
import threading
import time
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mdrl_deploy import OrtSearcher
from mdrl_deploy.server import MAX_BODY_BYTES, allowed_hosts_for, create_app, host_header_name

from .serving import start_server

pytestmark = pytest.mark.slow  # live server processes

QUERY = 'a woman with a blue bag and long hair'
NOT_SERVED = {'error': 'no such image in the gallery'}
WORDS = ('a man woman with red blue black white shirt bag hair shoes long '
         'short pants coat hat and carrying wearing').split()


def queries_of_3_to_78_words(num: int):
    """Deterministic queries, 3 to 78 words (most longer than max_length)."""
    return [' '.join(WORDS[(i * 7 + j) % len(WORDS)]
                     for j in range(3 + (i * 13) % 76)) for i in range(num)]


@pytest.fixture(scope='module')
def served(deploy_model, tmp_path_factory):
    """Searcher + TestClient over a gallery with a symlink pointing out."""
    from fastapi.testclient import TestClient

    from test_apis.search_testdata import write_gallery
    base = tmp_path_factory.mktemp('served')
    gallery = str(base / 'gallery')
    write_gallery(gallery)
    secret = base / 'secret.png'
    shutil.copy(os.path.join(gallery, 'cam0', 'p0_0.png'), secret)
    os.symlink(secret, os.path.join(gallery, 'cam1', 'zz_link.png'))
    searcher = OrtSearcher(deploy_model['export'], num_threads=1)
    searcher.build_index(gallery)
    index = searcher.save_index(str(base / 'index'))
    client = TestClient(create_app(searcher, max_query_chars=100, max_topk=20,
                                   allowed_hosts=['testserver']),
                        raise_server_exceptions=False)
    return dict(searcher=searcher, client=client, gallery=gallery,
                index=index, secret=str(secret))


def post_json(client, body, **kwargs):
    return client.post('/search', content=json.dumps(body),
                       headers={'content-type': 'application/json'}, **kwargs)


def test_page_is_the_shipped_static_file(served):
    import mdrl_deploy
    page = served['client'].get('/')
    assert page.status_code == 200
    assert page.headers['content-type'].startswith('text/html')
    with open(os.path.join(os.path.dirname(mdrl_deploy.__file__), 'static',
                           'search.html'), encoding='utf-8') as f:
        assert page.text == f.read()
    assert 'id="query"' in page.text and 'id="topk"' in page.text
    health = served['client'].get('/health').json()
    assert health['status'] == 'ok' and health['num_images'] == 11
    assert health['feature_dim'] == 32 and health['gallery'] == 'gallery'
    assert (health['max_topk'], health['max_query_chars']) == (20, 100)
    assert health['searches'] == dict(running=0, waiting=0, peak_running=0,
                                      max_running=2, max_waiting=64)


def test_search_returns_the_ranking(served):
    reply = post_json(served['client'], dict(query=QUERY, topk=5))
    assert reply.status_code == 200
    data = reply.json()
    expected = served['searcher'].search(QUERY, topk=5)[0]
    assert [r['path'] for r in data['results']] == [
        os.path.relpath(h.path, served['gallery']) for h in expected]
    assert [r['rank'] for r in data['results']] == [1, 2, 3, 4, 5]
    assert [r['score'] for r in data['results']] == pytest.approx(
        [h.score for h in expected], abs=1e-6)
    first = data['results'][0]
    assert first['name'] == os.path.basename(first['path'])
    img = served['client'].get(first['image_url'])
    assert img.status_code == 200
    with open(os.path.join(served['gallery'], first['path']), 'rb') as f:
        assert img.content == f.read()
    # default topk is 10; the query is stripped
    reply = post_json(served['client'], dict(query='  ' + QUERY + ' '))
    assert reply.json()['query'] == QUERY
    assert len(reply.json()['results']) == 10


@pytest.mark.parametrize('body, status, message', [
    (dict(query=''), 422,
     '"query" must be a non-empty text describing the person'),
    (dict(query='   '), 422,
     '"query" must be a non-empty text describing the person'),
    (dict(topk=3), 422,
     '"query" must be a non-empty text describing the person'),
    (dict(query=5), 422,
     '"query" must be a non-empty text describing the person'),
    (dict(query='x' * 101), 422,
     '"query" is 101 characters long; at most 100 are accepted'),
    (dict(query=QUERY, topk=0), 422,
     '"topk" must be an integer from 1 to 20, got 0'),
    (dict(query=QUERY, topk=10 ** 9), 422,
     '"topk" must be an integer from 1 to 20, got 1000000000'),
    (dict(query=QUERY, topk='5'), 422,
     '"topk" must be an integer from 1 to 20, got "5"'),
    (dict(query=QUERY, topk=True), 422,
     '"topk" must be an integer from 1 to 20, got true'),
    (dict(query=QUERY, topk=2.5), 422,
     '"topk" must be an integer from 1 to 20, got 2.5'),
    (dict(query=QUERY, k=3), 422,
     'unknown field \'k\': the body takes "query" and optional "topk"'),
    ([QUERY], 422,
     'the body must be a JSON object with "query" and optional "topk"'),
])
def test_bad_input_gets_a_json_error(served, body, status, message):
    reply = post_json(served['client'], body)
    assert reply.status_code == status
    assert reply.json() == dict(error=message)


def test_content_type_size_and_method(served):
    client = served['client']
    reply = client.post('/search', content=b'{"query": "a man"}',
                        headers={'content-type': 'text/plain'})
    assert reply.status_code == 415
    assert reply.json() == dict(error="the body must be JSON with "
                                "Content-Type: application/json, got "
                                "'text/plain'")
    assert client.post('/search', content=b'{"query": "a man"}'
                       ).status_code == 415  # no Content-Type at all
    reply = client.post('/search', content=b'\xff\xfe{',
                        headers={'content-type': 'application/json'})
    assert reply.status_code == 400
    assert reply.json()['error'].startswith('the body must be JSON: ')
    reply = post_json(client, dict(query='a' * MAX_BODY_BYTES))
    assert reply.status_code == 413
    assert reply.json() == dict(error='request body larger than 16384 bytes')
    reply = client.post('/search', json=dict(query=QUERY),
                        headers={'content-type':
                                 'application/json; charset=utf-8'})
    assert reply.status_code == 200
    reply = client.get('/search')
    assert reply.status_code == 405 and 'error' in reply.json()
    reply = client.get('/nothing')
    assert reply.status_code == 404 and 'error' in reply.json()


def test_host_header_is_checked(served):
    reply = served['client'].get('/health',
                                 headers={'host': 'attacker.example'})
    assert reply.status_code == 400
    assert allowed_hosts_for('127.0.0.1') == ['127.0.0.1', 'localhost']
    assert allowed_hosts_for('0.0.0.0') == ['*']
    assert allowed_hosts_for('10.1.2.3') == ['10.1.2.3']
    # IPv6: a Host header writes the address in brackets
    assert allowed_hosts_for('::1') == ['[::1]', 'localhost']
    assert allowed_hosts_for('::') == ['*']
    assert allowed_hosts_for('fd00::5') == ['[fd00::5]']
    assert [host_header_name(h) for h in ('::1', '[::1]', 'localhost')] == [
        '[::1]', '[::1]', 'localhost']


def test_ipv6_host_headers_are_matched(served):
    from fastapi.testclient import TestClient
    app = create_app(served['searcher'], allowed_hosts=['::1', 'localhost'])
    with TestClient(app) as client:
        for host, status in (('[::1]:8000', 200), ('[::1]', 200),
                             ('localhost:8000', 200), ('[::2]:8000', 400),
                             ('attacker.example', 400)):
            reply = client.get('/health', headers={'host': host})
            assert reply.status_code == status, host


class _Gate:
    """A searcher whose ``search`` waits for a signal (or raises)."""

    def __init__(self, inner, error=None):
        self.index = inner.index
        self.fingerprint = inner.fingerprint
        self.inner = inner
        self.error = error
        self.entered = threading.Event()
        self.release = threading.Event()

    def search(self, query, topk):
        self.entered.set()
        if self.error is not None:
            raise self.error
        assert self.release.wait(30)
        return self.inner.search(query, topk)


def _asgi_post(app, bodies):
    """POST the bodies concurrently to ``app``; the replies, in order."""

    async def run(gate):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url='http://127.0.0.1') as client:
            first = asyncio.ensure_future(client.post('/search',
                                                      json=bodies[0]))
            while not gate.entered.is_set():  # the first search is running
                await asyncio.sleep(0.01)
            rest = [await client.post('/search', json=b) for b in bodies[1:]]
            health = (await client.get('/health')).json()
            gate.release.set()
            return [await first] + rest, health

    return run


def test_searches_past_the_bound_get_503(served):
    gate = _Gate(served['searcher'])
    app = create_app(gate, max_running=1, max_waiting=0)
    replies, health = asyncio.run(_asgi_post(app, [dict(query=QUERY)] * 2)(
        gate))
    assert replies[0].status_code == 200
    assert replies[1].status_code == 503
    assert replies[1].headers['retry-after'] == '1'
    assert replies[1].json() == dict(
        error='busy: 1 searches running or waiting; try again in a second')
    assert health['searches']['running'] == 1


@pytest.mark.parametrize('error, status, message', [
    # the body was validated: a searcher's ValueError is the server's fault
    (ValueError('Query features are not finite'), 500,
     'internal error (ValueError)'),
    (RuntimeError('boom'), 500, 'internal error (RuntimeError)'),
])
def test_searcher_errors(served, error, status, message):
    from fastapi.testclient import TestClient
    gate = _Gate(served['searcher'], error=error)
    client = TestClient(create_app(gate), base_url='http://localhost',
                        raise_server_exceptions=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        reply = client.post('/search', json=dict(query=QUERY))
    assert reply.status_code == status
    assert reply.json() == dict(error=message)


@pytest.fixture(scope='module')
def live_onnx(served):
    """tools/serve.py --model EXPORT where importing torch raises."""
    for url in start_server(['--index', served['index'], '--model',
                             served['searcher'].export_dir],
                            block_torch=True):
        yield url


def raw_get(url, path, host=None):
    """GET ``path`` exactly as written (http.client does not normalise)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest('GET', path, skip_host=host is not None)
        if host is not None:
            conn.putheader('Host', host)
        conn.endheaders()
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


@pytest.mark.parametrize('path', [
    '/images/../secret.png', '/images/%2e%2e/secret.png',
    '/images/cam0/../../secret.png', '/images/cam0/%2e%2e/%2e%2e/secret.png',
    '/images/cam1/zz_link.png', '/images//etc/passwd',
    '/images/%2Fetc%2Fpasswd', '/images/cam0', '/images/cam0/missing.png',
    '/images/', '/images/cam0/..%2f..%2fsecret.png'])
def test_only_gallery_images_are_served(live_onnx, path):
    status, body = raw_get(live_onnx, path)
    assert (status, json.loads(body)) == (404, NOT_SERVED)


def test_live_server_serves_images_and_checks_hosts(live_onnx, served):
    # the symlink pointing out is indexed, but not served (above)
    assert any(p.endswith('zz_link.png') for p in served['searcher'].index.paths)
    status, body = raw_get(live_onnx, '/images/cam1/p1_3.png')
    with open(os.path.join(served['gallery'], 'cam1', 'p1_3.png'), 'rb') as f:
        assert status == 200 and body == f.read()
    status, body = raw_get(live_onnx, '/health', host='attacker.example')
    assert status == 400
    assert raw_get(live_onnx, '/health', host='localhost:1')[0] == 200


def test_chunked_body_is_cut_at_the_limit(live_onnx):
    """The server answers 413 while the chunked body is still being sent."""
    parts = urllib.parse.urlsplit(live_onnx)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest('POST', '/search')
        conn.putheader('Content-Type', 'application/json')
        conn.putheader('Transfer-Encoding', 'chunked')
        conn.endheaders()
        chunk = b'x' * 1024
        for _ in range(MAX_BODY_BYTES // 1024 + 2):  # 18 KiB, no last chunk
            conn.send(b'%x\r\n%s\r\n' % (len(chunk), chunk))
        reply = conn.getresponse()
        assert reply.status == 413
        assert json.loads(reply.read()) == dict(
            error='request body larger than 16384 bytes')
    finally:
        conn.close()


def _hammer(url, queries, clients, expected):
    """``clients`` threads send the queries; (status, paths, start, end)."""

    def client(i):
        out = []
        with httpx.Client(base_url=url, timeout=600) as c:
            for query in queries[i::clients]:
                start = time.perf_counter()
                r = c.post('/search', json=dict(query=query, topk=5))
                out.append((r.status_code, query,
                            [x['path'] for x in r.json().get('results', [])],
                            start, time.perf_counter()))
        return out

    with ThreadPoolExecutor(clients) as pool:
        replies = [r for rs in pool.map(client, range(clients)) for r in rs]
    assert len(replies) == len(queries)
    assert sorted({code for code, *_ in replies}) == [200]
    for _, query, paths, _, _ in replies:
        assert paths == expected[query], query
    return replies


def _expected(searcher, queries, gallery):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # long queries are truncated
        return {q: [os.path.relpath(h.path, gallery).replace(os.sep, '/')
                    for h in searcher.search(q, topk=5)[0]]
                for q in set(queries)}


def test_live_server_under_8_concurrent_clients(live_onnx, served):
    """Answers equal the in-process ranking while requests overlap, and no
    more searches ran at once than the bound (2). That two do run side by
    side is test_searches_run_side_by_side_up_to_the_bound (a search of a
    small gallery is too quick to rely on timing here)."""
    queries = [QUERY, 'a man in a red shirt'] * 24
    replies = _hammer(live_onnx, queries, 8,
                      _expected(served['searcher'], queries,
                                served['gallery']))
    spans = sorted((s, e) for *_, s, e in replies)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    health = httpx.get(live_onnx + '/health').json()
    assert 1 <= health['searches']['peak_running'] <= 2


class _Meet(_Gate):
    """A searcher whose searches wait until ``parties`` of them are inside
    at once (a server that runs them one by one breaks the barrier)."""

    def __init__(self, inner, parties):
        super().__init__(inner)
        self.barrier = threading.Barrier(parties, timeout=30)

    def search(self, query, topk):
        self.barrier.wait()
        return self.inner.search(query, topk)


def test_searches_run_side_by_side_up_to_the_bound(served):
    meet = _Meet(served['searcher'], parties=2)
    app = create_app(meet, max_running=2)

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport,
                                     base_url='http://127.0.0.1') as client:
            replies = await asyncio.gather(*[
                client.post('/search', json=dict(query=QUERY, topk=3))
                for _ in range(4)])
            return replies, (await client.get('/health')).json()

    replies, health = asyncio.run(run())
    assert [r.status_code for r in replies] == [200] * 4
    assert health['searches']['peak_running'] == 2


def test_live_onnx_server_32_clients_long_queries(live_onnx, served):
    queries = queries_of_3_to_78_words(128)
    assert max(len(q.split()) for q in queries) == 78
    _hammer(live_onnx, queries, 32,
            _expected(served['searcher'], queries, served['gallery']))


def test_live_pytorch_server_32_clients_long_queries(served, deploy_model):
    """The shared-tokenizer race: 32 clients, queries of 3 to 78 words (the
    model reads 16 tokens), PyTorch checkpoint: no 5xx and the truncated
    rankings of the searcher in-process."""
    from mdrl_plugin.apis import PersonSearcher
    torch_s = PersonSearcher(deploy_model['config'],
                             deploy_model['checkpoint'], progress=False)
    torch_s.load_index(served['index'])
    queries = queries_of_3_to_78_words(128)
    expected = _expected(torch_s, queries, served['gallery'])
    for url in start_server(['--index', served['index'], '--model',
                             deploy_model['checkpoint'], '--config',
                             deploy_model['config']]):
        _hammer(url, queries, 32, expected)

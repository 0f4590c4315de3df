"""The FastAPI search server: page, JSON API, health, image serving, errors."""
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from mdrl_deploy import OrtSearcher
from mdrl_deploy.server import MAX_BODY_BYTES, create_app
from .serving import start_server

QUERY = 'a woman with a blue bag and long hair'


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
    index = searcher.save_index(str(base / 'index.npz'))
    client = TestClient(create_app(searcher, max_query_chars=100, max_topk=20),
                        raise_server_exceptions=False)
    return dict(searcher=searcher, client=client, gallery=gallery,
                index=index, secret=str(secret))


def test_page_and_health(served):
    page = served['client'].get('/')
    assert page.status_code == 200
    assert 'id="query"' in page.text and 'id="topk"' in page.text
    assert '11 gallery images' in page.text
    health = served['client'].get('/health').json()
    assert health['status'] == 'ok' and health['num_images'] == 11
    assert health['feature_dim'] == 32


def test_search_returns_the_ranking(served):
    reply = served['client'].post('/search', json=dict(query=QUERY, topk=5))
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
    # default topk is 10
    reply = served['client'].post('/search', json=dict(query=QUERY))
    assert len(reply.json()['results']) == 10


@pytest.mark.parametrize('body, status, message', [
    (dict(query=''), 400, 'non-empty'),
    (dict(query='   '), 400, 'non-empty'),
    (dict(topk=3), 400, 'non-empty'),
    (dict(query=5), 400, 'non-empty'),
    (dict(query='x' * 101), 400, 'at most 100'),
    (dict(query=QUERY, topk=0), 400, 'from 1 to 20'),
    (dict(query=QUERY, topk=10 ** 9), 400, 'from 1 to 20'),
    (dict(query=QUERY, topk='5'), 400, 'from 1 to 20'),
    (dict(query=QUERY, topk=True), 400, 'from 1 to 20'),
    (dict(query=QUERY, topk=2.5), 400, 'from 1 to 20'),
    ([QUERY], 400, 'JSON object'),
])
def test_bad_input_gets_a_json_error(served, body, status, message):
    reply = served['client'].post('/search', content=json.dumps(body),
                                  headers={'content-type': 'application/json'})
    assert reply.status_code == status
    assert message in reply.json()['error']


def test_non_json_and_huge_bodies(served):
    client = served['client']
    reply = client.post('/search', content=b'query=a man',
                        headers={'content-type': 'text/plain'})
    assert reply.status_code == 400 and 'must be JSON' in reply.json()['error']
    reply = client.post('/search', content=b'\xff\xfe{')
    assert reply.status_code == 400
    reply = client.post('/search', content=json.dumps(
        dict(query='a' * MAX_BODY_BYTES)))
    assert reply.status_code == 413 and 'larger' in reply.json()['error']
    reply = client.get('/search')
    assert reply.status_code == 405 and 'error' in reply.json()
    reply = client.get('/nothing')
    assert reply.status_code == 404 and 'error' in reply.json()


@pytest.mark.parametrize('url', [
    '/images/../secret.png', '/images/%2e%2e/secret.png',
    '/images/cam0/../../secret.png', '/images/cam1/zz_link.png',
    '/images//etc/passwd', '/images/%2Fetc%2Fpasswd', '/images/cam0',
    '/images/cam0/missing.png', '/images/'])
def test_only_gallery_images_are_served(served, url):
    reply = served['client'].get(url)
    assert reply.status_code == 404
    assert reply.json() == dict(error='no such image in the gallery') or \
        'error' in reply.json()


def test_symlink_out_is_indexed_but_not_served(served):
    paths = served['searcher'].index.paths
    assert any(p.endswith('zz_link.png') for p in paths)
    assert served['client'].get('/images/cam1/p1_3.png').status_code == 200


def test_live_server_under_8_concurrent_clients(served):
    for url in start_server(['--index', served['index'], '--model',
                             served['searcher'].export_dir]):
        expected = httpx.post(url + '/search',
                              json=dict(query=QUERY, topk=5)).json()

        def client(i):
            out = []
            with httpx.Client(base_url=url, timeout=60) as c:
                for _ in range(5):
                    r = c.post('/search', json=dict(query=QUERY, topk=5))
                    out.append((r.status_code, [x['path'] for x in
                                                r.json()['results']]))
                out.append((c.get('/health').status_code, None))
            return out

        with ThreadPoolExecutor(8) as pool:
            replies = [r for rs in pool.map(client, range(8)) for r in rs]
        assert len(replies) == 48
        assert all(code == 200 for code, _ in replies)
        assert all(paths == [x['path'] for x in expected['results']]
                   for _, paths in replies if paths is not None)
        bad = httpx.post(url + '/search', content=b'{"query": ')
        assert bad.status_code == 400 and 'Traceback' not in bad.text

"""The search page in a real headless Chromium (Playwright + Debian chromium).

Outside CI a missing browser skips the test; with ``CI`` set (``.ci/run``
installs Debian's ``chromium`` and the ``playwright`` package) it fails.
"""
import os
import shutil

import pytest

from .serving import start_server

#: Debian's chromium (``apt-get install chromium``); Playwright's own browser
#: download is not used.
CHROMIUM = os.environ.get('MDRL_CHROMIUM', '/usr/bin/chromium')
ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
        '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync']
QUERY = 'a woman with a blue bag and long hair'
#: Where the screenshot goes (kept by CI as an artefact when set).
SCREENSHOT_DIR = os.environ.get('MDRL_SCREENSHOT_DIR')


def _need(what: str) -> None:
    if os.environ.get('CI'):
        pytest.fail(f'{what} is required in CI (.ci/run installs it)')
    pytest.skip(f'{what} is not installed')


@pytest.fixture(scope='module')
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need('the playwright package (pip install -r requirements/tests.txt)')
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        _need(f'Chromium at {CHROMIUM} (apt-get install chromium)')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=ARGS)
        yield browser
        browser.close()


def test_page_shows_results_in_api_order(browser, deploy_model, deploy_gallery,
                                         tmp_path):
    import httpx

    from mdrl_deploy import OrtSearcher
    searcher = OrtSearcher(deploy_model['export'], num_threads=1)
    searcher.build_index(deploy_gallery)
    index = searcher.save_index(str(tmp_path / 'index'))
    for url in start_server(['--index', index, '--model',
                             deploy_model['export']]):
        api = httpx.post(url + '/search', json=dict(query=QUERY, topk=6),
                         timeout=60).json()
        expected = [r['path'] for r in api['results']]
        assert len(expected) == 6

        page = browser.new_page(viewport=dict(width=1200, height=700))
        page.goto(url + '/')
        page.fill('#query', QUERY)
        page.fill('#topk', '6')
        page.click('#submit')
        page.wait_for_selector('figure.hit', timeout=60000)
        figures = page.locator('figure.hit')
        assert figures.count() == 6
        shown = [figures.nth(i).get_attribute('data-path') for i in range(6)]
        assert shown == expected
        names = page.locator('figure.hit .name').all_inner_texts()
        assert names == expected
        scores = page.locator('figure.hit .score').all_inner_texts()
        assert scores[0].startswith('#1')
        # every image was loaded and decoded by the browser
        page.wait_for_function(
            "() => [...document.querySelectorAll('figure.hit img')]"
            ".every(i => i.complete && i.naturalWidth > 0)", timeout=60000)
        # an empty query shows the API's error, no results
        page.fill('#query', '   ')
        page.click('#submit')
        page.wait_for_selector('#status.error', timeout=60000)
        assert 'non-empty' in page.inner_text('#status')
        assert page.locator('figure.hit').count() == 0
        page.fill('#query', QUERY)
        page.click('#submit')
        page.wait_for_selector('figure.hit')
        # a link with ?q= searches on load
        import urllib.parse
        page.goto(url + '/?topk=3&q=' + urllib.parse.quote(QUERY))
        page.wait_for_selector('figure.hit', timeout=60000)
        assert [f.get_attribute('data-path') for f in
                page.locator('figure.hit').all()] == expected[:3]
        page.fill('#topk', '6')
        page.click('#submit')
        page.wait_for_function(
            "() => document.querySelectorAll('figure.hit').length == 6",
            timeout=60000)
        shot = os.path.join(SCREENSHOT_DIR or str(tmp_path), 'search_page.png')
        os.makedirs(os.path.dirname(shot), exist_ok=True)
        page.screenshot(path=shot, full_page=True)
        assert os.path.getsize(shot) > 1000
        page.close()

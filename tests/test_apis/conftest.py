"""Fixtures of the search API tests: tiny models, a gallery, a searcher."""
import pytest

from .search_testdata import write_gallery, write_model


@pytest.fixture(scope='session')
def search_model(tiny_bert_dir, tmp_path_factory) -> dict:
    """Config + checkpoint of a tiny MDRL (seed 0)."""
    return write_model(str(tmp_path_factory.mktemp('search_model')),
                       tiny_bert_dir, seed=0)


@pytest.fixture(scope='session')
def other_model(tiny_bert_dir, tmp_path_factory) -> dict:
    """Same config, other weights (seed 1)."""
    return write_model(str(tmp_path_factory.mktemp('other_model')),
                       tiny_bert_dir, seed=1, name='other')


@pytest.fixture
def gallery(tmp_path) -> str:
    """A folder of 10 images in two sub-folders (identity ``i // 2``)."""
    folder = str(tmp_path / 'gallery')
    write_gallery(folder)
    return folder


@pytest.fixture
def gallery_paths(gallery):
    """Sorted absolute image paths of :func:`gallery`."""
    from mdrl_deploy import scan_images
    return scan_images(gallery)[0]


@pytest.fixture
def searcher(search_model):
    """A PersonSearcher of the tiny model, no progress bar."""
    from mdrl_plugin.apis import PersonSearcher
    return PersonSearcher(search_model['config'], search_model['checkpoint'],
                          batch_size=4, progress=False)


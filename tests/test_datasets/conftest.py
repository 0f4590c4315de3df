"""Fixtures: tiny PEDES datasets in the public release layouts (tmp_path)."""
import pytest

from test_datasets._pedes_data import cuhk_records, icfg_records, rstp_records, write_dataset


@pytest.fixture
def cuhk_root(tmp_path) -> str:
    """A CUHK-PEDES folder with reid_raw.json and PNG images."""
    return write_dataset(str(tmp_path / 'CUHK-PEDES'), 'reid_raw.json',
                         cuhk_records())


@pytest.fixture
def icfg_root(tmp_path) -> str:
    """An ICFG-PEDES folder with ICFG-PEDES.json and JPEG images."""
    return write_dataset(str(tmp_path / 'ICFG-PEDES'), 'ICFG-PEDES.json',
                         icfg_records())


@pytest.fixture
def rstp_root(tmp_path) -> str:
    """An RSTPReid folder with data_captions.json and JPEG images."""
    return write_dataset(str(tmp_path / 'RSTPReid'), 'data_captions.json',
                         rstp_records(), path_key='img_path')


@pytest.fixture(autouse=True)
def _fast_serialize(monkeypatch):
    """Skip the ``gc.collect()`` that ``BaseDataset._serialize_data`` runs.

    With torch imported one collection takes 0.2-0.4 s, which would dominate
    these tests; serialisation itself still runs.
    """
    import gc
    monkeypatch.setattr(gc, 'collect', lambda *args, **kwargs: 0)

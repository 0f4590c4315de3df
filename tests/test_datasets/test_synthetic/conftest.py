"""The tiny synthetic set the tests of the generator read."""
import json
import os.path as osp

import pytest

from mdrl_plugin.datasets.synthetic import generate

#: 12 identities x 2 images, splits 8/2/2.
TINY = dict(num_ids=12, images_per_id=2, seed=0, splits=[8, 2, 2])


@pytest.fixture(scope='package')
def tiny(tmp_path_factory):
    """``(folder, generate()'s summary, the records of reid_raw.json)``."""
    out = str(tmp_path_factory.mktemp('demo') / 'CUHK-PEDES')
    result = generate(out, **TINY)
    with open(osp.join(out, 'reid_raw.json')) as f:
        records = json.load(f)
    return out, result, records

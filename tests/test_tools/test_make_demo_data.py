"""Tests of tools/make_demo_data.py (the synthetic CUHK-PEDES-style data)."""
import dataclasses
import importlib.util
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pytest

_TOOL = osp.join(
    osp.dirname(__file__), '..', '..', 'tools', 'make_demo_data.py')


def _load_tool():
    spec = importlib.util.spec_from_file_location('make_demo_data', _TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mdd = _load_tool()

#: The tiny set every test reads: 12 identities x 2 images, splits 8/2/2.
TINY = dict(num_ids=12, images_per_id=2, seed=0, splits=[8, 2, 2])


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo') / 'CUHK-PEDES')
    result = mdd.generate(out, **TINY)
    with open(osp.join(out, 'reid_raw.json')) as f:
        records = json.load(f)
    return out, result, records


def _read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------
# layout and schema
# --------------------------------------------------------------------------
def test_layout_is_the_cuhk_pedes_release(tiny):
    out, _, records = tiny
    assert sorted(os.listdir(out)) == ['imgs', 'reid_raw.json']
    assert sorted(os.listdir(osp.join(
        out, 'imgs'))) == ['test_query', 'train_query', 'val_query']
    assert isinstance(records, list) and len(records) == 12 * 2
    files_on_disk = sorted(
        osp.relpath(osp.join(d, f), osp.join(out, 'imgs'))
        for d, _, fs in os.walk(osp.join(out, 'imgs')) for f in fs)
    assert files_on_disk == sorted(r['file_path'] for r in records)


def test_record_schema(tiny):
    out, _, records = tiny
    for i, r in enumerate(records):
        assert list(r) == [
            'split', 'captions', 'file_path', 'processed_tokens', 'id'
        ], i
        assert r['split'] in ('train', 'val', 'test')
        assert type(r['id']) is int and 1 <= r['id'] <= 12
        # relative to imgs/, forward slashes, <split>_query/p<id>_s<n>.jpg
        assert re.fullmatch(r'(train|val|test)_query/p\d{5}_s\d{5}\.jpg',
                            r['file_path']), r['file_path']
        assert r['file_path'].startswith(r['split'] + '_query/')
        assert r['file_path'].split('/')[1][1:6] == f"{r['id']:05d}"
        assert osp.isfile(osp.join(out, 'imgs', r['file_path']))
        assert isinstance(r['captions'], list) and len(r['captions']) == 2
        assert all(isinstance(c, str) and c for c in r['captions'])
        assert r['captions'][0] != r['captions'][1]
        assert r['processed_tokens'] == [
            mdd.tokenize(c) for c in r['captions']
        ]
        for tokens in r['processed_tokens']:
            assert all(t == t.lower() and re.fullmatch(r"[a-z0-9'-]+", t)
                       for t in tokens)
    # one record per image, sample numbers 1..24 in order
    assert [int(r['file_path'][-9:-4]) for r in records] == list(range(1, 25))


def test_images_are_pedestrian_sized_jpegs(tiny):
    out, _, records = tiny
    for r in records:
        path = osp.join(out, 'imgs', r['file_path'])
        with open(path, 'rb') as f:
            assert f.read(3) == b'\xff\xd8\xff'
        h, w = _read_rgb(path).shape[:2]
        assert 64 <= w <= 96 and 160 <= h <= 240, (path, w, h)
        assert 2.0 <= h / w <= 3.0


def test_tokenize_keeps_hyphenated_words_and_drops_punctuation():
    assert mdd.tokenize('The man wears a red T-shirt, blue pants.') == [
        'the', 'man', 'wears', 'a', 'red', 't-shirt', 'blue', 'pants'
    ]


# --------------------------------------------------------------------------
# identities and splits
# --------------------------------------------------------------------------
def test_splits_are_identity_disjoint_and_sized(tiny):
    _, result, records = tiny
    ids = {s: set() for s in ('train', 'val', 'test')}
    for r in records:
        ids[r['split']].add(r['id'])
    # numbered train first, then val, then test
    assert ids == {'train': set(range(1, 9)), 'val': {9, 10}, 'test': {11, 12}}
    per_id = {}
    for r in records:
        per_id[r['id']] = per_id.get(r['id'], 0) + 1
    assert set(per_id.values()) == {2}
    assert result['splits'] == {
        'train': dict(ids=8, images=16, captions=32),
        'val': dict(ids=2, images=4, captions=8),
        'test': dict(ids=2, images=4, captions=8)
    }


def test_num_combinations_by_hand():
    # outfits: man 4 uppers x {trousers, shorts} + coat/trousers = 9 with a
    # lower garment; woman 4 x {trousers, shorts, skirt} + coat/trousers = 13
    # with one, plus the dress without one.
    body = (9 + 13) * 11 * 11 + 11
    assert mdd.num_combinations() == body * 6 * (1 + 4 * 11) * (1 + 11)
    assert mdd.num_combinations() == 8_660_520


def _check_split_layout(identities) -> None:
    assert [i.pid for i in identities] == list(range(1, 301))
    assert [i.split for i in identities
            ] == (['train'] * 200 + ['val'] * 50 + ['test'] * 50)
    assert len({i.key for i in identities}) == 300
    for i in identities:
        assert (i.gender, i.upper_type, i.lower_type) in mdd.OUTFITS
        assert (i.item is None) == (i.item_colour is None)
        assert (i.lower_type is None) == (i.lower_colour is None)


def _min_pairwise_diff(members) -> int:
    return min(
        sum(x != y for x, y in zip(members[a].key, members[b].key))
        for a in range(len(members)) for b in range(a))


def test_default_splits_are_drawn_like_train():
    identities, notes = mdd.sample_identities(300, [200, 50, 50], 0)
    assert notes == []
    _check_split_layout(identities)
    # no extra separation: with 50 identities drawn like train, some share
    # their garment colour pair and some differ in fewer than 3 attributes
    # (the separated variant below forbids both)
    for split in ('val', 'test'):
        members = [i for i in identities if i.split == split]
        assert len({m.colour_pair for m in members}) < len(members)
    evaluation = [i for i in identities if i.split != 'train']
    assert _min_pairwise_diff(evaluation) < 3


def test_separated_eval_variant_separates_evaluation_splits():
    identities, notes = mdd.sample_identities(
        300, [200, 50, 50], 0, separated_eval=True)
    assert notes == []
    _check_split_layout(identities)
    for split in ('val', 'test'):
        members = [i for i in identities if i.split == split]
        assert len({m.colour_pair for m in members}) == len(members)
        assert _min_pairwise_diff(members) >= 3


def test_large_test_split_relaxes_separation_with_a_note():
    # 11 x 11 = 121 colour pairs cannot separate 130 test identities
    identities, notes = mdd.sample_identities(131, [1, 0, 130], 3,
                                              separated_eval=True)
    assert len({i.key for i in identities}) == 131
    assert notes and notes[0].startswith(
        'test: 130 identities do not fit separation rule (True, 3)')
    test = [i for i in identities if i.split == 'test']
    assert len({m.colour_pair for m in test}) < 130


# --------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------
def _mentions(caption: str, colour: str, noun_key: str) -> bool:
    colours = mdd.SYNONYMS.get(colour, (colour, ))
    return any(f'{c} {n}' in caption for c in colours
               for n in mdd.SYNONYMS[noun_key])


def _check_caption(caption: str, ident) -> None:
    """Assert that ``caption`` names every captioned attribute of ``ident``
    (colour right before the garment/item noun) and nothing it lacks."""
    low = caption.lower()
    words = ' ' + ' '.join(mdd.tokenize(caption)) + ' '
    assert any(f' {n} ' in words or f' {n.split()[-1]} ' in words
               for n in mdd.SYNONYMS[ident.gender]), caption
    other = 'she' if ident.gender == 'man' else 'he'
    assert f' {other} ' not in words, caption
    assert _mentions(low, ident.upper_colour, ident.upper_type), caption
    if ident.lower_type:
        assert _mentions(low, ident.lower_colour, ident.lower_type), caption
    assert _mentions(low, ident.shoe_colour, 'shoes'), caption
    if ident.item:
        assert _mentions(low, ident.item_colour, ident.item), caption
    else:
        assert not any(f' {n} ' in words
                       for n in ('bag', 'backpack', 'rucksack', 'handbag',
                                 'purse', 'umbrella')), caption
    if ident.hat_colour:
        assert _mentions(low, ident.hat_colour, 'hat'), caption
    else:
        assert ' hat ' not in words and ' cap ' not in words, caption
    assert caption[0].isupper() and caption.endswith('.'), caption
    assert '  ' not in caption and ' ,' not in caption, caption


def test_every_caption_names_every_attribute(tiny):
    _, result, records = tiny
    by_pid = {i.pid: i for i in result['identities']}
    for r in records:
        ident = by_pid[r['id']]
        assert ident.split == r['split']
        for caption in r['captions']:
            _check_caption(caption, ident)


def test_all_templates_name_every_attribute():
    identities, _ = mdd.sample_identities(300, [200, 50, 50], 0)
    used = set()
    for ident in identities:
        for k in range(3):
            captions = mdd.make_captions(ident, np.random.default_rng([9, k]))
            assert len(captions) == 2 and captions[0] != captions[1]
            for caption in captions:
                _check_caption(caption, ident)
                used.add(' '.join(caption.split()[:2]))
    assert len(used) > 20  # many different openings


def test_captions_vary_between_images():
    ident = mdd.sample_identities(3, [1, 1, 1], 0)[0][0]
    captions = [
        c for k in range(6)
        for c in mdd.make_captions(ident, np.random.default_rng([0, 1, k]))
    ]
    assert len(set(captions)) == len(captions)
    first_words = {c.split()[0] for c in captions}
    assert len(first_words) >= 3  # different sentence structures


def test_articles_are_correct():
    ident = mdd.Identity(
        pid=1,
        split='train',
        gender='man',
        upper_type='jacket',
        upper_colour='orange',
        lower_type='trousers',
        lower_colour='blue',
        shoe_colour='white',
        item='umbrella',
        item_colour='orange',
        hat_colour=None,
        hair_colour='black',
        skin=0)
    for k in range(10):
        for c in mdd.make_captions(ident, np.random.default_rng(k)):
            assert ' a orange' not in c.lower() and 'an blue' not in c, c
            assert 'an orange jacket' in c or 'an orange zip-up jacket' in c


# --------------------------------------------------------------------------
# the pictures show what the captions say
# --------------------------------------------------------------------------
_NAMES = list(mdd.COLOURS)
_PALETTE = np.array([mdd.COLOURS[n] for n in _NAMES], np.float64)


def _through_jpeg(img: np.ndarray) -> np.ndarray:
    buf = np.frombuffer(mdd.encode_jpeg(img), np.uint8)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _seen_colour(ident, field: str, colour: str, other: str,
                 seed: int) -> tuple:
    """Render ``ident`` with ``field`` = colour and = other (same pose,
    lighting, background); the pixels that change are that attribute.
    Returns the nearest palette name of their median and their area."""
    imgs = [
        _through_jpeg(
            mdd.render_image(
                dataclasses.replace(ident, **{field: c}),
                np.random.default_rng([seed, ident.pid])))
        for c in (colour, other)
    ]
    changed = np.abs(imgs[0].astype(int) - imgs[1].astype(int)).sum(-1) > 90
    median = np.median(imgs[0][changed], axis=0)
    name = _NAMES[int(np.argmin(((_PALETTE - median)**2).sum(1)))]
    return name, changed.mean()


@pytest.mark.parametrize('field,min_area', [('upper_colour', 0.07),
                                            ('lower_colour', 0.03),
                                            ('shoe_colour', 0.004)])
def test_garment_colours_stay_recognisable(field, min_area):
    identities, _ = mdd.sample_identities(40, [30, 5, 5], 1)
    chosen = [i for i in identities if getattr(i, field)][:4]
    allowed = mdd.SHOE_COLOURS if field == 'shoe_colour' else _NAMES
    for ident in chosen:
        for k, colour in enumerate(allowed):
            other = allowed[(k + len(allowed) // 2) % len(allowed)]
            name, area = _seen_colour(ident, field, colour, other, seed=k)
            assert name == colour, (ident, field, colour, name)
            assert area >= min_area, (ident, field, colour, area)


def test_carried_items_are_visible_in_their_colour():
    identities, _ = mdd.sample_identities(60, [50, 5, 5], 2)
    results = []
    for item in mdd.ITEMS:
        ident = next(i for i in identities if i.item == item)
        for k, colour in enumerate(_NAMES):
            name, area = _seen_colour(
                ident, 'item_colour', colour, _NAMES[(k + 5) % 11], seed=k)
            assert area >= 0.008, (item, colour, area)
            results.append(name == colour)
    # small items lose a little colour to blur and outlines, rarely
    assert np.mean(results) >= 0.95


def test_images_vary_within_an_identity(tiny):
    out, _, records = tiny
    a, b = [
        _read_rgb(osp.join(out, 'imgs', r['file_path'])) for r in records
        if r['id'] == 1
    ]
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    assert a.shape != b.shape or np.abs(a[:h, :w].astype(int) -
                                        b[:h, :w].astype(int)).mean() > 10


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------
def _files(root: str) -> dict:
    found = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(osp.join(d, f), 'rb') as fh:
                found[osp.relpath(osp.join(d, f), root)] = fh.read()
    return found


def test_same_seed_is_byte_identical_and_other_seed_differs(tiny, tmp_path):
    out, _, _ = tiny
    again = str(tmp_path / 'again')
    mdd.generate(again, **TINY)
    assert _files(again) == _files(out)
    other = str(tmp_path / 'other')
    mdd.generate(other, **dict(TINY, seed=1))
    a, b = _files(out), _files(other)
    assert sorted(a) == sorted(b)  # same layout
    assert a['reid_raw.json'] != b['reid_raw.json']
    assert sum(a[k] != b[k] for k in a) == len(a)


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------
def test_main_prints_a_summary(tmp_path, capsys):
    out = str(tmp_path / 'cli')
    mdd.main([
        out, '--num-ids', '6', '--images-per-id', '1', '--splits', '4,1,1',
        '--seed', '5'
    ])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        f'Wrote a synthetic CUHK-PEDES-style dataset to {out} in ')
    assert lines[1:5] == [
        'split    ids  images  captions',
        'train      4       4         8',
        'val        1       1         2',
        'test       1       1         2',
    ]
    assert lines[5] == f'annotations: {osp.join(out, "reid_raw.json")}'
    with open(osp.join(out, 'reid_raw.json')) as f:
        assert len(json.load(f)) == 6


def test_default_splits_follow_num_ids(tmp_path):
    result = mdd.generate(str(tmp_path / 'd'), num_ids=12, images_per_id=1)
    assert [result['splits'][s]['ids'] for s in ('train', 'val', 'test')] \
        == [8, 2, 2]


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        mdd.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_argument_errors(tmp_path, capsys):
    out = str(tmp_path / 'x')
    prefix = 'make_demo_data.py: error: '
    assert _error([out, '--num-ids', '10', '--splits', '5,2,2'], capsys) == \
        prefix + '--splits 5,2,2 sum to 9, expected --num-ids 10'
    assert _error([out, '--splits', '200,100'], capsys) == \
        prefix + ("--splits must be three non-negative integers "
                  "TRAIN,VAL,TEST, got '200,100'")
    assert _error([out, '--splits', '200,-1,101'], capsys) == \
        prefix + ("--splits must be three non-negative integers "
                  "TRAIN,VAL,TEST, got '200,-1,101'")
    assert _error([out, '--num-ids', '3', '--splits', '3,0,0'], capsys) == \
        prefix + ('--splits needs at least one train and one test identity, '
                  'got 3,0,0')
    n = mdd.num_combinations() + 1
    assert _error([out, '--num-ids',
                   str(n), '--splits', f'{n - 2},1,1'], capsys) == prefix + (
                       f'--num-ids {n} exceeds the {n - 1} unique attribute '
                       'combinations')
    assert _error([out, '--num-ids', '0'], capsys) == \
        prefix + '--num-ids must be at least 1, got 0'
    assert _error([out, '--images-per-id', '0'], capsys) == \
        prefix + '--images-per-id must be at least 1, got 0'
    assert not os.path.exists(out)  # nothing written on errors


def test_non_empty_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / 'busy'
    out.mkdir()
    (out / 'notes.txt').write_text('keep me')
    args = [
        str(out), '--num-ids', '3', '--images-per-id', '1', '--splits', '1,1,1'
    ]
    assert _error(args, capsys) == (
        f'make_demo_data.py: error: OUT {out} exists and is not empty; pass '
        '--overwrite to replace its imgs/ and reid_raw.json')
    assert sorted(os.listdir(out)) == ['notes.txt']
    mdd.main(args + ['--overwrite'])
    stale = out / 'imgs' / 'train_query' / 'stale.jpg'
    stale.write_bytes(b'old')
    mdd.main(args + ['--overwrite'])
    assert not stale.exists()  # imgs/ is replaced, not merged
    assert sorted(os.listdir(out)) == ['imgs', 'notes.txt', 'reid_raw.json']
    assert (out / 'notes.txt').read_text() == 'keep me'
    (tmp_path / 'file').write_text('')
    assert _error([str(tmp_path / 'file')], capsys) == (
        f'make_demo_data.py: error: OUT {tmp_path / "file"} exists and is '
        'not a directory')


def test_contact_sheet(tiny, tmp_path):
    out, _, _ = tiny
    path = mdd.make_contact_sheet(out, str(tmp_path / 'sheet.jpg'))
    sheet = cv2.imread(path)
    # 8 identities (columns) x 2 images (rows), 80x200 tiles, 4 px gaps
    assert sheet.shape == (2 * 204 + 4, 8 * 84 + 4, 3)


# --------------------------------------------------------------------------
# the package's loader reads it
# --------------------------------------------------------------------------
def _cuhk_pedes_class():
    try:
        from mdrl_plugin.registry import DATASETS
        return DATASETS.get('CUHKPEDES')
    except Exception:  # the datasets package is absent or broken
        return None


@pytest.mark.skipif(
    _cuhk_pedes_class() is None,
    reason='mdrl_plugin has no CUHKPEDES dataset registered')
def test_loads_through_cuhk_pedes_dataset(tiny):
    from mdrl_plugin.registry import DATASETS
    out, _, records = tiny
    train = DATASETS.build(
        dict(type='CUHKPEDES', data_root=out, split='train'))
    assert len(train) == 8 * 2 * 2  # one entry per caption
    infos = [train.get_data_info(i) for i in range(len(train))]
    assert sorted({d['gt_label'] for d in infos}) == list(range(8))
    assert {d['pid'] for d in infos} == set(range(1, 9))
    first = records[0]
    assert infos[0]['img_path'] == osp.join(out, 'imgs', first['file_path'])
    assert infos[0]['text'] == first['captions'][0]
    test = DATASETS.build(dict(type='CUHKPEDES', data_root=out, split='test'))
    assert len(test) == 2 * 2  # one entry per gallery image
    for i in range(len(test)):
        info = test.get_data_info(i)
        assert info['pid'] in (11, 12) and len(info['texts']) == 2
    val = DATASETS.build(dict(type='CUHKPEDES', data_root=out, split='val'))
    assert len(val) == 4

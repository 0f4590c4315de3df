import pytest

from mdrl_plugin.datasets.annotation import (
    find_missing_files,
    format_problems,
    group_images,
    normalize_image_path,
    parse_pedes_records,
)


@pytest.mark.parametrize('raw, expected', [
    ('CUHK01/0363004.png', 'CUHK01/0363004.png'),
    ('imgs/CUHK01/0363004.png', 'CUHK01/0363004.png'),
    ('imgs\\CUHK01\\0363004.png', 'CUHK01/0363004.png'),
    ('./imgs/train/1.jpg', 'train/1.jpg'),
    (' 0000_c14_0031.jpg ', '0000_c14_0031.jpg'),
    ('imgsX/1.jpg', 'imgsX/1.jpg'),
    ('/data/CUHK-PEDES/imgs/a.png', '/data/CUHK-PEDES/imgs/a.png'),
])
def test_normalize_image_path(raw, expected):
    assert normalize_image_path(raw, 'imgs') == expected


def test_parse_records_kinds_and_kept_records():
    raw = [
        dict(split='train', id=1, file_path='a.png', captions=[' x ', 'y']),
        'not a record',
        dict(split='train', id=2, img_path='b.png', captions=['z', '']),
        dict(split='test', id=True, file_path='c.png', captions=['w']),
    ]
    records, problems = parse_pedes_records(raw, ('train', 'test'))
    assert [(r.index, r.pid, r.path, r.captions) for r in records] == [
        (0, 1, 'a.png', ['x', 'y']), (2, 2, 'b.png', ['z'])]
    assert [(p.kind, p.index) for p in problems] == [
        ('record', 1), ('empty_caption', 2), ('id', 3)]
    assert str(problems[0]) == 'record 1: expected a JSON object, got str'
    assert format_problems(problems, limit=2).splitlines() == [
        '  record 1: expected a JSON object, got str',
        f'  {problems[1]} and 1 more']


def test_group_images_merges_and_flags_conflicts():
    raw = [
        dict(split='train', id=1, file_path='a.png', captions=['1']),
        dict(split='train', id=1, file_path='imgs/a.png', captions=['2']),
        dict(split='train', id=2, file_path='b.png', captions=['3']),
        dict(split='train', id=3, file_path='b.png', captions=['4']),
    ]
    records, problems = parse_pedes_records(raw, ('train', ))
    assert problems == []
    images, conflicts = group_images(records)
    assert [(i.path, i.pid, i.captions, i.record_indices)
            for i in images] == [('a.png', 1, ['1', '2'], [0, 1]),
                                 ('b.png', 2, ['3'], [2])]
    assert [(c.kind, c.index) for c in conflicts] == [('id_conflict', 3)]


def test_find_missing_files(tmp_path):
    (tmp_path / 'a').write_text('')
    paths = [str(tmp_path / n) for n in ('a', 'b', 'c')]
    assert find_missing_files(paths) == paths[1:]

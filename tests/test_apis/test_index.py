"""GalleryIndex: file format, fingerprint and file checks without a model."""
import json
import os
import re

import numpy as np
import pytest

from mdrl_plugin.apis import (GalleryIndex, IndexFormatError,
                              IndexMismatchError, StaleIndexError)
from mdrl_deploy.ranking import summarize
from mdrl_plugin.apis.index import config_sha256, file_sha256, file_stat

FP = dict(config_sha256='c' * 64, checkpoint_sha256='k' * 64, feature_dim=3,
          config='a.py', checkpoint='/m/a.pth')


def make_index(tmp_path, labels=None):
    paths, sizes, mtimes = [], [], []
    for i in range(4):
        p = tmp_path / f'{i}.jpg'
        p.write_bytes(b'x' * (i + 1))
        paths.append(str(p))
        s, m = file_stat(str(p))
        sizes.append(s)
        mtimes.append(m)
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    return GalleryIndex(paths=paths, features=feats, fingerprint=dict(FP),
                        sizes=sizes, mtimes_ns=mtimes, labels=labels,
                        root=str(tmp_path))


def test_round_trip_keeps_everything(tmp_path):
    index = make_index(tmp_path, labels=[1, 'bob', None, 1])
    assert index.features.dtype == np.float32
    out = index.save(str(tmp_path / 'i.npz'))
    loaded = GalleryIndex.load(out)
    np.testing.assert_array_equal(loaded.features, index.features)
    for key in ('paths', 'labels', 'root', 'fingerprint', 'created',
                'global_dim'):
        assert getattr(loaded, key) == getattr(index, key)
    for key in ('sizes', 'mtimes_ns'):
        assert getattr(loaded, key).tolist() == getattr(index, key).tolist()
    assert loaded.sizes.tolist() == [1, 2, 3, 4]
    loaded.check_fingerprint(dict(FP))
    loaded.check_files()


def test_features_are_memory_mapped_and_aligned(tmp_path):
    """Version 2 maps every feature array from the file, 64-byte aligned."""
    index = make_index(tmp_path)
    feats = np.eye(4, 6, dtype=np.float32)
    index = GalleryIndex(index.paths, feats, dict(FP, feature_dim=6),
                         index.sizes, index.mtimes_ns, global_dim=2)
    summary, spread = summarize(feats, 2)
    np.testing.assert_array_equal(index.summary, summary)
    loaded = GalleryIndex.load(index.save(str(tmp_path / 'i.npz')))
    assert loaded.is_mapped and not loaded.features.flags.writeable
    for array in (loaded.features, loaded.summary, loaded.spread):
        assert isinstance(array, np.memmap) and array.ctypes.data % 64 == 0
    np.testing.assert_array_equal(loaded.features, feats)
    np.testing.assert_array_equal(loaded.summary, summary)
    np.testing.assert_array_equal(loaded.spread, spread)
    assert loaded.spread.shape == (2, 4)  # [P, N]: one column per image
    with pytest.raises(ValueError, match=r'summary and spread must be '
                       r'\[4, 4\] and \[2, 4\], got \(4, 4\) and \(4, 2\)'):
        GalleryIndex(index.paths, feats, index.fingerprint, index.sizes,
                     index.mtimes_ns, global_dim=2, summary=summary,
                     spread=spread.T)
    # still an ordinary .npz for NumPy
    with np.load(str(tmp_path / 'i.npz')) as data:
        assert sorted(data.files) == ['features', 'header', 'mtime_ns',
                                      'sizes', 'spread', 'summary']
    in_memory = GalleryIndex.load(str(tmp_path / 'i.npz'), mmap=False)
    assert not in_memory.is_mapped
    np.testing.assert_array_equal(in_memory.features, feats)


def test_version_1_files_still_load(tmp_path):
    """The format written before memory mapping (np.savez, lists in JSON)."""
    index = make_index(tmp_path, labels=[1, 2, 3, 4])
    header = dict(index.header(), version=1, sizes=index.sizes.tolist(),
                  mtime_ns=index.mtimes_ns.tolist())
    del header['global_dim']
    path = str(tmp_path / 'v1.npz')
    np.savez(path, features=index.features,
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    loaded = GalleryIndex.load(path)
    assert loaded.is_mapped  # np.savez stores uncompressed: mapped too
    np.testing.assert_array_equal(loaded.features, index.features)
    assert loaded.labels == [1, 2, 3, 4] and loaded.global_dim is None
    loaded.check_files()
    assert GalleryIndex.load(loaded.save(path)).header()['version'] == 2


def test_save_uses_the_given_name(tmp_path):
    out = make_index(tmp_path).save(str(tmp_path / 'gallery.idx'))
    assert out.endswith('gallery.idx') and os.path.isfile(out)
    assert len(GalleryIndex.load(out)) == 4


def test_fingerprint_mismatch_names_every_difference(tmp_path):
    index = make_index(tmp_path)
    other = dict(FP, feature_dim=64, config_sha256='d' * 64)
    with pytest.raises(IndexMismatchError) as info:
        index.check_fingerprint(other, index_path='g.npz')
    msg = str(info.value)
    assert msg.startswith("Index 'g.npz' was made by another model; it "
                          'differs in feature width: index 3, model 64; '
                          "model config and test pipeline: index made with "
                          "'a.py' (sha256 cccccccccccc), searching with "
                          "'a.py' (sha256 dddddddddddd).")
    assert 'checkpoint' not in msg.split('. Its')[0]
    # informational fields do not matter
    index.check_fingerprint(dict(FP, checkpoint='/elsewhere/copy.pth'))


def test_stale_files(tmp_path):
    index = make_index(tmp_path)
    (tmp_path / '1.jpg').write_bytes(b'changed!')
    os.remove(tmp_path / '2.jpg')
    with pytest.raises(StaleIndexError) as info:
        index.check_files()
    assert str(info.value).startswith(
        'The index is out of date: 1 of 4 image files changed since it was '
        f"built (size or modification time differ): {str(tmp_path / '1.jpg')!r}"
        f'; 1 of 4 image files no longer exist or cannot be read: '
        f"{str(tmp_path / '2.jpg')!r}. Rebuild it")


def test_not_an_index(tmp_path):
    junk = tmp_path / 'junk.npz'
    junk.write_bytes(b'hello')
    with pytest.raises(IndexFormatError, match='is not an MDRL search index '
                       r'\(a .npz archive written by save_index\)'):
        GalleryIndex.load(str(junk))
    other = tmp_path / 'other.npz'
    np.savez(str(other), a=np.zeros(2))
    with pytest.raises(IndexFormatError, match=re.escape(
            'expected the arrays "features" and "header", found [\'a\']')):
        GalleryIndex.load(str(other))
    hdr = tmp_path / 'hdr.npz'
    header = np.frombuffer(json.dumps({'format': 'x'}).encode(), np.uint8)
    np.savez(str(hdr), features=np.zeros((1, 2), np.float32), header=header)
    with pytest.raises(IndexFormatError, match="header format is 'x', "
                       "expected 'mdrl-search-index'"):
        GalleryIndex.load(str(hdr))
    with pytest.raises(FileNotFoundError, match='Index file .* does not exist'):
        GalleryIndex.load(str(tmp_path / 'none.npz'))


def test_pickled_arrays_are_refused(tmp_path):
    """An archive with object arrays is not unpickled."""
    evil = tmp_path / 'evil.npz'
    np.savez(str(evil), features=np.zeros((1, 2), np.float32),
             header=np.array([{'format': 'mdrl-search-index'}], dtype=object))
    with pytest.raises(IndexFormatError, match='allow_pickle=False'):
        GalleryIndex.load(str(evil))


def test_other_version_is_refused(tmp_path):
    index = make_index(tmp_path)
    header = dict(index.header(), version=99)
    path = tmp_path / 'v99.npz'
    np.savez(str(path), features=index.features,
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(IndexFormatError, match='index version 99 is not '
                       'supported'):
        GalleryIndex.load(str(path))


def test_an_empty_index_file_is_refused(tmp_path):
    index = make_index(tmp_path)
    header = dict(index.header(), version=1, paths=[], sizes=[], mtime_ns=[])
    path = tmp_path / 'empty.npz'
    np.savez(str(path), features=np.zeros((0, 3), np.float32),
             header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(IndexFormatError) as info:
        GalleryIndex.load(str(path))
    assert str(info.value) == (
        f"{str(path)!r}: GalleryIndex: features must hold at least one image "
        "and one dimension, got shape (0, 3)")


def test_inconsistent_lengths():
    with pytest.raises(ValueError, match='paths has 1 entries for 2 feature'):
        GalleryIndex(paths=['a'], features=np.zeros((2, 3)), fingerprint={},
                     sizes=[1, 2], mtimes_ns=[1, 2])
    with pytest.raises(ValueError, match=r'features must be \[N, D\]'):
        GalleryIndex(paths=[], features=np.zeros(3), fingerprint={},
                     sizes=[], mtimes_ns=[])
    with pytest.raises(ValueError, match=r'at least one image and one '
                       r'dimension, got shape \(0, 3\)'):
        GalleryIndex(paths=[], features=np.zeros((0, 3)), fingerprint={},
                     sizes=[], mtimes_ns=[])
    with pytest.raises(ValueError, match='global_dim must divide the feature '
                       'width 3, got 2'):
        GalleryIndex(paths=['a'], features=np.zeros((1, 3)), fingerprint={},
                     sizes=[1], mtimes_ns=[1], global_dim=2)


def test_hashes(tmp_path):
    f = tmp_path / 'f.bin'
    f.write_bytes(b'abc')
    assert file_sha256(str(f), chunk_size=1) == (
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    assert config_sha256({'a': 1, 'b': [1, 2]}) == \
        config_sha256({'b': (1, 2), 'a': 1})
    assert config_sha256({'a': 1}) != config_sha256({'a': 2})

"""GalleryIndex: folder layout, fingerprint and file checks without a model."""
import json
import os
import re

import numpy as np
import pytest

from mdrl_deploy import GalleryIndex, IndexFormatError, IndexMismatchError, StaleIndexError
from mdrl_deploy.index import config_sha256, file_sha256, file_stat
from mdrl_deploy.ranking import summarize

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
    out = index.save(str(tmp_path / 'idx'))
    assert sorted(os.listdir(out)) == ['features.npy', 'meta.json',
                                       'mtime_ns.npy', 'sizes.npy']
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
    # the documented layout: plain .npy files and meta.json
    with open(os.path.join(out, 'meta.json')) as f:
        meta = json.load(f)
    assert meta == dict(index.meta(), format='mdrl-search-index', version=3,
                        num_images=4, feature_dim=3, global_dim=None)
    assert np.load(os.path.join(out, 'sizes.npy')).dtype == np.int64


def test_arrays_are_memory_mapped(tmp_path):
    """Every array is mapped from its .npy file, read-only."""
    index = make_index(tmp_path)
    feats = np.eye(4, 6, dtype=np.float32)
    index = GalleryIndex(index.paths, feats, dict(FP, feature_dim=6),
                         index.sizes, index.mtimes_ns, global_dim=2)
    summary, spread = summarize(feats, 2)
    np.testing.assert_array_equal(index.summary, summary)
    loaded = GalleryIndex.load(index.save(str(tmp_path / 'idx')))
    assert not loaded.features.flags.writeable
    for array in (loaded.features, loaded.summary, loaded.spread):
        assert isinstance(array, np.memmap)
    np.testing.assert_array_equal(loaded.features, feats)
    np.testing.assert_array_equal(loaded.summary, summary)
    np.testing.assert_array_equal(loaded.spread, spread)
    assert loaded.spread.shape == (2, 4)  # [P, N]: one column per image
    with pytest.raises(ValueError, match=r'summary and spread must be '
                       r'\[4, 4\] and \[2, 4\], got \(4, 4\) and \(4, 2\)'):
        GalleryIndex(index.paths, feats, index.fingerprint, index.sizes,
                     index.mtimes_ns, global_dim=2, summary=summary,
                     spread=spread.T)
    in_memory = GalleryIndex.load(str(tmp_path / 'idx'), mmap=False)
    assert not isinstance(in_memory.features, np.memmap)
    np.testing.assert_array_equal(in_memory.features, feats)


def test_saving_over_an_index_replaces_it(tmp_path):
    """The new folder is renamed in; a mapped copy of the old one stays
    readable; no temp folder is left; other paths are never replaced."""
    index = make_index(tmp_path)
    out = index.save(str(tmp_path / 'idx'))
    old = GalleryIndex.load(out)
    index.labels = [7, 7, 7, 7]
    index.save(out)
    assert GalleryIndex.load(out).labels == [7] * 4
    np.testing.assert_array_equal(old.features, index.features)  # still mapped
    assert sorted(os.listdir(tmp_path))[-1] == 'idx'  # no .idx.*.tmp left
    (tmp_path / 'photos').mkdir()
    for target in ('photos', '0.jpg'):
        with pytest.raises(FileExistsError, match=re.escape(
                f"Cannot save the index to {str(tmp_path / target)!r}: it "
                'exists and is not an index folder')):
            index.save(str(tmp_path / target))
    assert (tmp_path / '0.jpg').read_bytes() == b'x'


@pytest.mark.parametrize('version', [1, 2])
def test_single_file_indexes_are_refused_with_how_to_rebuild(tmp_path,
                                                             version):
    """Versions 1 and 2 were one .npz file."""
    index = make_index(tmp_path)
    path = str(tmp_path / 'old.npz')
    np.savez(path, features=index.features, header=np.frombuffer(json.dumps(
        dict(format='mdrl-search-index', version=version)).encode(),
        np.uint8))
    with pytest.raises(IndexFormatError) as info:
        GalleryIndex.load(path)
    assert str(info.value) == (
        f"{path!r} is a single-file index of an earlier version; indexes are "
        'folders now. Rebuild it from the image folder with the model you '
        'search with: `python tools/search.py CONFIG CHECKPOINT --gallery '
        'IMAGE_FOLDER --save-index NEW_FOLDER` (or build_index(folder) '
        'followed by save_index).')


def test_fingerprint_mismatch_names_every_difference(tmp_path):
    index = make_index(tmp_path)
    other = dict(FP, feature_dim=64, config_sha256='d' * 64)
    with pytest.raises(IndexMismatchError) as info:
        index.check_fingerprint(other, index_path='g_index')
    msg = str(info.value)
    assert msg.startswith("Index 'g_index' was made by another model; it "
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
    index = make_index(tmp_path)
    folder = tmp_path / 'junk'
    folder.mkdir()
    with pytest.raises(IndexFormatError, match=re.escape(
            f"{str(folder)!r} is not an MDRL search index (a folder written "
            'by save_index): FileNotFoundError')):
        GalleryIndex.load(str(folder))
    out = index.save(str(tmp_path / 'idx'))
    meta = json.load(open(os.path.join(out, 'meta.json')))
    for bad in (dict(meta, format='x'), dict(meta, version=99), [1]):
        with open(os.path.join(out, 'meta.json'), 'w') as f:
            json.dump(bad, f)
        with pytest.raises(IndexFormatError, match=re.escape(
                f'{out!r}: meta.json is not that of an MDRL search index of '
                'version 3. Rebuild it')):
            GalleryIndex.load(out)
    with open(os.path.join(out, 'meta.json'), 'w') as f:
        json.dump(meta, f)
    os.remove(os.path.join(out, 'sizes.npy'))
    with pytest.raises(IndexFormatError, match=re.escape(
            "the index lacks ['sizes.npy']")):
        GalleryIndex.load(out)
    np.save(os.path.join(out, 'sizes.npy'), index.sizes)
    np.save(os.path.join(out, 'features.npy'), index.features.astype(int))
    with pytest.raises(IndexFormatError, match='features must be float32, '
                       'got int64'):
        GalleryIndex.load(out)
    with pytest.raises(FileNotFoundError, match='Index .* does not exist'):
        GalleryIndex.load(str(tmp_path / 'none'))


def test_pickled_arrays_are_refused(tmp_path):
    """An object array is not unpickled."""
    out = make_index(tmp_path).save(str(tmp_path / 'idx'))
    np.save(os.path.join(out, 'sizes.npy'), np.array([{'a': 1}] * 4),
            allow_pickle=True)
    with pytest.raises(IndexFormatError, match="can't be memory-mapped: "
                       'Python objects'):
        GalleryIndex.load(out)
    with pytest.raises(IndexFormatError, match='allow_pickle=False'):
        GalleryIndex.load(out, mmap=False)


def test_an_index_without_images_is_refused(tmp_path):
    out = make_index(tmp_path).save(str(tmp_path / 'idx'))
    meta = json.load(open(os.path.join(out, 'meta.json')))
    with open(os.path.join(out, 'meta.json'), 'w') as f:
        json.dump(dict(meta, paths=[]), f)
    for name, array in (('features', np.zeros((0, 3), np.float32)),
                        ('sizes', np.zeros(0, np.int64)),
                        ('mtime_ns', np.zeros(0, np.int64))):
        np.save(os.path.join(out, name + '.npy'), array)
    with pytest.raises(IndexFormatError) as info:
        GalleryIndex.load(out)
    assert str(info.value) == (
        f"{out!r}: GalleryIndex: features must be [N, D] with at least one "
        "image and one dimension, got shape (0, 3)")


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
    assert file_sha256(str(f)) == (
        'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    assert config_sha256({'a': 1, 'b': [1, 2]}) == \
        config_sha256({'b': (1, 2), 'a': 1})
    assert config_sha256({'a': 1}) != config_sha256({'a': 2})

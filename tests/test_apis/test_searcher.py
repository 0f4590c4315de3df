"""PersonSearcher on a tiny model and a folder of generated images."""
import json
import os
import os.path as osp
import re
import warnings

import numpy as np
import pytest
import torch

from mdrl_deploy import (
    GalleryIndex,
    IndexMismatchError,
    QueryTruncatedWarning,
    SearchHit,
    SkippedImagesWarning,
    StaleIndexError,
    UnmatchedLabelsWarning,
    scan_images,
)
from mdrl_plugin.apis import PersonSearcher

from .search_testdata import pid_of

QUERIES = ['a man in a red shirt', 'a woman with a blue bag and long hair',
           'black pants and white shoes']


def brute_force(searcher, texts, k):
    """Ranking by an explicit cosine matrix and a full argsort."""
    q = searcher.encode_texts(texts).astype(np.float64)
    g = searcher.index.features.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    sims = q @ g.T
    order = np.argsort(-sims, axis=1, kind='stable')[:, :k]
    return sims, order


def test_build_index_scans_recursively(searcher, gallery, gallery_paths):
    index = searcher.build_index(gallery)
    assert index is searcher.index
    assert len(index) == searcher.num_images == 10
    assert index.paths == gallery_paths
    assert {osp.dirname(p) for p in index.paths} == {
        osp.join(gallery, 'cam0'), osp.join(gallery, 'cam1')}
    assert index.features.dtype == np.float32
    assert index.features.shape == (10, searcher.feature_dim) == (10, 32)
    np.testing.assert_allclose(np.linalg.norm(index.features, axis=1), 1,
                               atol=1e-5)
    for path, size, mtime in zip(index.paths, index.sizes, index.mtimes_ns):
        st = os.stat(path)
        assert (size, mtime) == (st.st_size, st.st_mtime_ns)
    assert index.root == osp.abspath(gallery)
    assert index.labels is None
    assert index.fingerprint['feature_dim'] == 32


def test_features_do_not_depend_on_batching(search_model, gallery):
    feats = []
    for bs, workers in ((1, 0), (3, 0), (64, 0), (3, 2)):
        s = PersonSearcher(search_model['config'], search_model['checkpoint'],
                           batch_size=bs, num_workers=workers, progress=False)
        index = s.build_index(gallery)
        assert index.paths == scan_images(gallery)[0]
        feats.append(index.features)
    for other in feats[1:]:
        np.testing.assert_allclose(feats[0], other, atol=1e-5)


def test_image_features_match_the_model(searcher, gallery_paths):
    """Index rows are the model's features of the pipeline's output."""
    searcher.build_index(gallery_paths[:2])
    packed = [searcher.pipeline(dict(img_path=p)) for p in gallery_paths[:2]]
    assert packed[0]['inputs'].shape == (3, 32, 16)
    with torch.no_grad():
        ref = searcher.model.extract_image_feat(
            searcher.model.data_preprocessor.preprocess_images(
                [p['inputs'] for p in packed]))
    np.testing.assert_allclose(searcher.index.features, ref.numpy(),
                               atol=1e-6)


def test_search_equals_brute_force_cosine(searcher, gallery):
    searcher.build_index(gallery)
    results = searcher.search(QUERIES, topk=5)
    sims, order = brute_force(searcher, QUERIES, 5)
    assert len(results) == 3
    for q, hits in enumerate(results):
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert [h.index for h in hits] == order[q].tolist()
        assert [h.path for h in hits] == [
            searcher.index.paths[i] for i in order[q]]
        np.testing.assert_allclose([h.score for h in hits],
                                   sims[q, order[q]], atol=1e-5)
        assert all(h.label is None for h in hits)


def test_hit_unpacks_as_path_and_score(searcher, gallery):
    searcher.build_index(gallery)
    hits = searcher.search('a man in a red shirt', topk=3)
    assert len(hits) == 1 and len(hits[0]) == 3
    hit = hits[0][0]
    assert isinstance(hit, SearchHit)
    path, score = hit
    assert (path, score) == (hit.path, hit.score)
    assert isinstance(score, float)
    assert [p for p, _ in hits[0]] == [h.path for h in hits[0]]


def test_topk_larger_than_gallery_returns_all(searcher, gallery):
    searcher.build_index(gallery)
    hits = searcher.search(QUERIES[0], topk=1000)[0]
    assert len(hits) == 10
    assert sorted(h.path for h in hits) == sorted(searcher.index.paths)
    assert [h.rank for h in hits] == list(range(1, 11))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize('topk', [0, -3, 2.5, True])
def test_bad_topk(searcher, gallery, topk):
    searcher.build_index(gallery)
    with pytest.raises(ValueError,
                       match=re.escape(f'topk must be a positive int, got '
                                       f'{topk!r}')):
        searcher.search('a man', topk=topk)


@pytest.mark.parametrize('texts, bad', [('', 0), ('   \t', 0),
                                        (['a man', '  '], 1)])
def test_empty_query_is_an_error(searcher, gallery, texts, bad):
    searcher.build_index(gallery)
    with pytest.raises(ValueError, match=re.escape(
            f'Query texts[{bad}] is empty: describe the person')):
        searcher.search(texts)


def test_no_query_is_an_error(searcher, gallery):
    searcher.build_index(gallery)
    with pytest.raises(ValueError, match='No query given'):
        searcher.search([])
    with pytest.raises(TypeError, match=re.escape(
            'Query texts[0] must be a str, got int')):
        searcher.search([3])


def test_long_query_is_truncated_with_a_notice(searcher, gallery):
    searcher.build_index(gallery)
    long_query = ' '.join(['red'] * 20)  # 20 words + [CLS] + [SEP] = 22
    with pytest.warns(QueryTruncatedWarning, match=re.escape(
            'has 22 tokens but the model reads at most 16 (max_length of the '
            'config, [CLS] and [SEP] included): the last 6 tokens are '
            'ignored.')):
        feat_long = searcher.encode_texts(long_query)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # 14 words fit: no notice
        feat_cut = searcher.encode_texts(' '.join(['red'] * 14))
    assert isinstance(feat_long, np.ndarray) and feat_long.dtype == np.float32
    np.testing.assert_array_equal(feat_long, feat_cut)
    with pytest.warns(QueryTruncatedWarning):
        hits = searcher.search(long_query, topk=2)
    assert len(hits[0]) == 2


def test_truncation_notices_do_not_grow_with_distinct_queries(searcher,
                                                              gallery):
    """Python keeps every distinct warning text: a server that warned with
    the query text would keep one entry per distinct long query forever."""
    searcher.build_index(gallery)
    with pytest.warns(QueryTruncatedWarning) as notices:
        searcher.encode_texts(' '.join(['red'] * 20))
        searcher.encode_texts(' '.join(['blue'] * 20))
    assert len(notices) == 2
    assert str(notices[0].message) == str(notices[1].message)


def test_assigning_an_index_also_swaps_its_ranker(searcher, gallery):
    full = searcher.build_index(gallery)
    two = GalleryIndex(paths=full.paths[:2], features=full.features[:2],
                       fingerprint=full.fingerprint, sizes=full.sizes[:2],
                       mtimes_ns=full.mtimes_ns[:2], root=full.root)
    searcher.index = two
    hits = searcher.search('a man in red', topk=10)[0]
    assert sorted(h.path for h in hits) == sorted(full.paths[:2])
    searcher.index = None
    with pytest.raises(RuntimeError, match='No gallery index yet'):
        searcher.search('a man')


def test_non_finite_features_are_refused(searcher, gallery, monkeypatch):
    searcher.build_index(gallery)
    with pytest.raises(ValueError, match=re.escape(
            'Query features are not finite (NaN or inf).')):
        searcher.search_features(np.full((1, searcher.feature_dim), np.nan))
    encode = searcher.encode_images

    def one_nan(paths):
        feats, kept, stats, skipped = encode(paths)
        feats[1] = np.nan
        return feats, kept, stats, skipped
    monkeypatch.setattr(searcher, 'encode_images', one_nan)
    with pytest.raises(ValueError, match=re.escape(
            'The model gave non-finite features (NaN or inf) for 1 image(s) '
            'in ')) as err:
        searcher.build_index(gallery)
    # the index of before is kept; its second image is the one refused
    assert str(err.value).endswith(
        f': {searcher.index.paths[1]}. Check the checkpoint (or the export) '
        'before indexing.')


def test_search_before_index(searcher):
    with pytest.raises(RuntimeError, match=re.escape(
            'No gallery index yet: call build_index(folder) or '
            'load_index(path) first.')):
        searcher.search('a man')


def test_save_load_round_trip(searcher, search_model, gallery, tmp_path):
    searcher.build_index(gallery, labels={
        osp.relpath(p, gallery): pid_of(p) for p in searcher_paths(gallery)})
    before = searcher.search(QUERIES, topk=4)
    path = str(tmp_path / 'gallery_index')
    assert searcher.save_index(path) == path

    fresh = PersonSearcher(search_model['config'], search_model['checkpoint'],
                           progress=False)
    index = fresh.load_index(path)
    np.testing.assert_array_equal(index.features, searcher.index.features)
    assert index.paths == searcher.index.paths
    assert index.labels == [pid_of(p) for p in index.paths]
    after = fresh.search(QUERIES, topk=4)
    assert after == before
    assert [h.label for h in after[0]] == [pid_of(h.path) for h in after[0]]

    # the documented layout: .npy arrays and meta.json
    assert sorted(os.listdir(path)) == ['features.npy', 'meta.json',
                                        'mtime_ns.npy', 'sizes.npy']
    assert np.load(osp.join(path, 'sizes.npy')).tolist() == \
        index.sizes.tolist()  # global features: no summary
    with open(osp.join(path, 'meta.json')) as f:
        header = json.load(f)
    assert header['format'] == 'mdrl-search-index'
    assert header['version'] == 3
    assert header['num_images'] == 10 and header['feature_dim'] == 32
    assert header['fingerprint']['checkpoint_sha256'] == \
        searcher.fingerprint['checkpoint_sha256']
    assert set(header) >= {'paths', 'labels', 'root', 'global_dim'}
    assert header['global_dim'] is None and \
        isinstance(index.features, np.memmap)


def searcher_paths(gallery):
    return scan_images(gallery)[0]


def test_refuses_index_of_another_checkpoint(searcher, other_model, gallery,
                                             tmp_path):
    searcher.build_index(gallery)
    path = str(tmp_path / 'g_index')
    searcher.save_index(path)
    other = PersonSearcher(other_model['config'], other_model['checkpoint'],
                           progress=False)
    with pytest.raises(IndexMismatchError) as info:
        other.load_index(path)
    msg = str(info.value)
    assert msg.startswith(f'Index {path!r} was made by another model; it '
                          'differs in checkpoint: index made with '
                          f"{searcher.fingerprint['checkpoint']!r}")
    assert 'model config' not in msg  # only the checkpoint differs
    assert 'Rebuild it from the image folder' in msg
    assert f'--save-index {path}' in msg
    assert other.index is None


def test_refuses_index_of_another_config(searcher, search_model, gallery,
                                         tmp_path):
    from mmengine import Config
    searcher.build_index(gallery)
    path = str(tmp_path / 'g_index')
    searcher.save_index(path)
    cfg = Config.fromfile(search_model['config'])
    cfg.test_dataloader.dataset.pipeline[1]['interpolation'] = 'nearest'
    changed = PersonSearcher(cfg, search_model['checkpoint'], progress=False)
    with pytest.raises(IndexMismatchError,
                       match='differs in model config and test pipeline'):
        changed.load_index(path)


def test_refuses_index_with_modified_or_missing_image(searcher, gallery,
                                                      tmp_path):
    searcher.build_index(gallery)
    path = str(tmp_path / 'g_index')
    searcher.save_index(path)
    changed = searcher.index.paths[3]
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(StaleIndexError) as info:
        searcher.load_index(path)
    assert str(info.value).startswith(
        f"Index {path!r} is out of date: 1 of 10 image files changed since it "
        f"was built (size or modification time differ): {changed!r}. "
        'Rebuild it')
    gone = searcher.index.paths[0]
    os.remove(gone)
    with pytest.raises(StaleIndexError, match=re.escape(
            f'1 of 10 image files no longer exist or cannot be read: '
            f'{gone!r}')):
        searcher.load_index(path)
    # an explicit opt-out still loads it
    assert len(searcher.load_index(path, check_files=False)) == 10


def test_rewritten_image_same_mtime_other_size_is_detected(searcher, gallery,
                                                           tmp_path):
    searcher.build_index(gallery)
    path = str(tmp_path / 'g_index')
    searcher.save_index(path)
    target = searcher.index.paths[5]
    st = os.stat(target)
    with open(target, 'ab') as f:
        f.write(b'\0' * 7)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(StaleIndexError, match='1 of 10 image files changed'):
        searcher.load_index(path)


def test_atomic_save_leaves_no_partial_index(searcher, gallery, tmp_path,
                                             monkeypatch):
    from mdrl_test_utils import tree_bytes
    searcher.build_index(gallery)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    path = str(out_dir / 'g_index')
    searcher.save_index(path)
    good = tree_bytes(path)
    save = np.save

    def broken(file, array, **kwargs):  # the disk fills up after the sizes
        if str(getattr(file, 'name', file)).endswith('mtime_ns.npy'):
            raise OSError('No space left on device')
        save(file, array, **kwargs)

    monkeypatch.setattr(np, 'save', broken)
    searcher.index.labels = [1] * 10
    with pytest.raises(OSError, match='No space left on device'):
        searcher.save_index(path)
    assert tree_bytes(path) == good  # old index untouched
    with pytest.raises(OSError):
        searcher.save_index(str(out_dir / 'new'))
    assert sorted(os.listdir(out_dir)) == ['g_index']  # no temp, no partial


def test_save_to_missing_folder(searcher, gallery, tmp_path):
    searcher.build_index(gallery)
    with pytest.raises(FileNotFoundError, match='folder .* does not exist'):
        searcher.save_index(str(tmp_path / 'nope' / 'g_index'))


def test_unreadable_files_are_skipped_with_one_warning(searcher, gallery):
    with open(osp.join(gallery, 'cam0', 'broken.jpg'), 'wb') as f:
        f.write(b'this is not a jpeg')
    open(osp.join(gallery, 'cam1', 'empty.png'), 'wb').close()
    with open(osp.join(gallery, 'notes.txt'), 'w') as f:
        f.write('not an image')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        index = searcher.build_index(gallery)
    skipped = [w for w in caught if issubclass(w.category,
                                               SkippedImagesWarning)]
    assert len(skipped) == 1
    msg = str(skipped[0].message)
    assert msg.startswith(f"Skipped 3 of 13 files in folder {gallery!r}: "
                          '2 unreadable image file(s): ')
    assert osp.join(gallery, 'cam0', 'broken.jpg') in msg
    assert osp.join(gallery, 'cam1', 'empty.png') in msg
    assert msg.endswith('1 non-image file(s): ' +
                        osp.join(gallery, 'notes.txt'))
    assert len(index) == 10
    assert not any(p.endswith(('broken.jpg', 'empty.png')) for p in
                   index.paths)


def test_skipped_warning_lists_only_the_first_five(searcher, gallery):
    for i in range(7):
        with open(osp.join(gallery, f'bad{i}.jpg'), 'wb') as f:
            f.write(b'junk')
    with pytest.warns(SkippedImagesWarning,
                      match=r'7 unreadable image file\(s\): .*bad4\.jpg .*'
                      r' and 2 more$'):
        searcher.build_index(gallery)


def test_empty_gallery_is_an_error(searcher, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match=re.escape(
            f"No image files in folder {str(empty)!r} (it is empty); "
            'expected files ending in .jpg, .jpeg, .png')):
        searcher.build_index(str(empty))
    (empty / 'readme.md').write_text('hello')
    with pytest.raises(ValueError, match=re.escape(
            "(it holds 1 other files, e.g. 'readme.md')")):
        searcher.build_index(str(empty))
    (empty / 'x.jpg').write_bytes(b'not an image')
    with pytest.warns(SkippedImagesWarning), pytest.raises(
            ValueError, match=re.escape(
                f"No readable image in folder {str(empty)!r}: all 1 image "
                f"files failed to load, e.g. {str(empty / 'x.jpg')!r}")):
        searcher.build_index(str(empty))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        searcher.build_index(str(tmp_path / 'missing'))
    assert searcher.index is None


def test_labels_from_a_dict_or_a_file(searcher, gallery, gallery_paths,
                                      tmp_path):
    # dict with paths relative to the gallery folder
    rel = {osp.relpath(p, gallery): pid_of(p) for p in gallery_paths}
    index = searcher.build_index(gallery, labels=rel)
    assert index.labels == [pid_of(p) for p in index.paths]
    hits = searcher.search('a man', topk=10)[0]
    assert [h.label for h in hits] == [pid_of(h.path) for h in hits]
    # the same object in a JSON file (string labels allowed), for a list
    # of files: absolute paths
    labels = tmp_path / 'labels.json'
    labels.write_text(json.dumps({gallery_paths[0]: 'a',
                                  gallery_paths[1]: 'b'}))
    with pytest.warns(UnmatchedLabelsWarning, match=re.escape(
            f'1 of 3 gallery images have no label: {gallery_paths[2]}')):
        index = searcher.build_index(gallery_paths[:3], labels=str(labels))
    assert index.labels == ['a', 'b', None]
    # bad labels fail before any image is encoded
    encoded = []
    searcher.encode_images = lambda paths: encoded.append(paths)
    with pytest.raises(ValueError, match=re.escape(
            'labels holds a JSON list; expected an object')):
        searcher.build_index(gallery, labels=[0] * 10)
    assert encoded == []


def test_labels_that_match_nothing_warn(searcher, gallery):
    with pytest.warns(UnmatchedLabelsWarning, match=re.escape(
            'None of the 10 gallery images has a label: the 1 labelled paths '
            'match no gallery file')):
        index = searcher.build_index(gallery, labels={'/elsewhere/x.jpg': 1})
    assert index.labels == [None] * 10


def test_set_labels_on_a_loaded_index(searcher, gallery, gallery_paths,
                                      tmp_path):
    searcher.build_index(gallery)
    path = str(tmp_path / 'g_index')
    searcher.save_index(path)
    searcher.load_index(path)
    labels = tmp_path / 'labels.json'
    labels.write_text(json.dumps(
        {osp.relpath(p, gallery): pid_of(p) for p in gallery_paths}))
    searcher.set_labels(str(labels))
    assert searcher.index.labels == [pid_of(p) for p in searcher.index.paths]


def test_constructor_errors(search_model, tmp_path):
    cfg, ckpt = search_model['config'], search_model['checkpoint']
    with pytest.raises(FileNotFoundError, match='Config file .* does not'):
        PersonSearcher(str(tmp_path / 'nope.py'), ckpt)
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"Checkpoint file {str(tmp_path / 'x.pth')!r} does not exist")):
        PersonSearcher(cfg, str(tmp_path / 'x.pth'))
    bad = str(tmp_path / 'bad.pth')
    torch.save({'meta': {}, 'state_dict': {'foo': torch.zeros(1)}}, bad)
    with pytest.raises(RuntimeError, match=re.escape(
            f'Checkpoint {bad!r} does not fit the model of config {cfg!r}')):
        PersonSearcher(cfg, bad)
    from mmengine import Config
    no_pipe = Config.fromfile(cfg)
    no_pipe.pop('test_dataloader')
    with pytest.raises(KeyError, match='has no test pipeline'):
        PersonSearcher(no_pipe, ckpt)
    with pytest.raises(ValueError, match='batch_size must be >= 1'):
        PersonSearcher(cfg, ckpt, batch_size=0)


def _queries_3_to_62_words(num):
    words = ['red', 'a', 'man', 'bag', 'blue', 'woman', 'shoes']
    return [' '.join(words[(i + j) % 7] for j in range(3 + i * 5 % 60))
            for i in range(num)]


def test_tokenisation_equals_the_hugging_face_call(searcher):
    """The thread-safe tokenizer copy gives the Hugging Face fast tokenizer's
    ids and masks (both padding modes) and leaves the original unchanged."""
    dp = searcher.data_preprocessor
    texts = _queries_3_to_62_words(6) + ['a man', 'Ünïcode  spaces\tand tabs']
    for padding in ('longest', 'max_length'):
        dp.padding = padding
        ref = dp.tokenizer(texts, padding=padding, truncation=True,
                           max_length=dp.max_length, return_tensors='pt')
        got = dp.tokenize(texts)
        assert torch.equal(got['input_ids'], ref['input_ids'])
        assert torch.equal(got['attention_mask'], ref['attention_mask'])
    dp.padding = 'longest'
    assert dp.token_ids(texts) == dp.tokenizer(
        texts, truncation=True, max_length=dp.max_length)['input_ids']
    assert dp.text_lengths(texts) == [
        len(i) for i in dp.tokenizer(texts)['input_ids']]
    assert max(dp.text_lengths(texts)) > dp.max_length


def test_concurrent_searches_are_thread_safe(searcher, gallery):
    """32 threads searching at once get what one thread gets: queries of 3
    to 62 words are truncated to the model's 16 tokens (a shared fast
    tokenizer reconfigured per call gave "Already borrowed" errors and
    untruncated queries)."""
    from concurrent.futures import ThreadPoolExecutor
    searcher.build_index(gallery)
    queries = _queries_3_to_62_words(64)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', QueryTruncatedWarning)
        expected = [[h.path for h in searcher.search(q, topk=3)[0]]
                    for q in queries]
        with ThreadPoolExecutor(32) as pool:
            got = list(pool.map(lambda q: [h.path for h in searcher.search(
                q, topk=3)[0]], queries * 4))
    assert got == expected * 4

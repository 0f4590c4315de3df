"""Torch-free image/text preprocessing against the PyTorch pipeline."""
import cv2
import numpy as np
import pytest

from mdrl_deploy import ImagePreprocessor, OrtSearcher, resize_bilinear
from mdrl_plugin.apis import PersonSearcher


@pytest.mark.parametrize('src, dst', [((77, 31), (32, 16)), ((20, 9), (64, 24)),
                                      ((384, 128), (192, 64)), ((5, 5), (5, 5))])
def test_resize_bilinear_matches_opencv(src, dst):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    ref = cv2.resize(img, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    mine = resize_bilinear(img, dst[1], dst[0])
    assert mine.shape == ref.shape
    # OpenCV rounds its 8-bit bilinear weights in fixed point
    assert np.abs(mine.astype(int) - ref).max() <= 1


def test_cv2_backend_equals_the_pytorch_pipeline(deploy_model, deploy_gallery):
    torch_s = PersonSearcher(deploy_model['config'], deploy_model['checkpoint'],
                             progress=False)
    prep = ImagePreprocessor(32, 16, [123.675, 116.28, 103.53],
                             [58.395, 57.12, 57.375], 'rgb', backend='cv2')
    from mdrl_deploy import scan_images
    paths = scan_images(deploy_gallery)[0]
    ref = torch_s.data_preprocessor.preprocess_images(
        [torch_s.pipeline(dict(img_path=p))['inputs'] for p in paths]).numpy()
    np.testing.assert_array_equal(prep(paths), ref)


def test_pillow_backend_difference(deploy_model, deploy_gallery):
    """Pillow decoding + NumPy bilinear: same ranking, features close."""
    cv = OrtSearcher(deploy_model['export'], image_backend='cv2')
    pil = OrtSearcher(deploy_model['export'], image_backend='pillow')
    a = cv.build_index(deploy_gallery).features
    b = pil.build_index(deploy_gallery).features
    assert np.abs(a - b).max() < 2e-2
    queries = ['a man in a red shirt', 'black pants and white shoes']
    assert [[h.index for h in q] for q in cv.search(queries, 10)] == \
        [[h.index for h in q] for q in pil.search(queries, 10)]


def test_unreadable_files_are_skipped(deploy_model, tmp_path):
    (tmp_path / 'bad.jpg').write_bytes(b'not an image')
    (tmp_path / 'empty.png').write_bytes(b'')
    img = np.zeros((40, 20, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'ok.png'), img)
    s = OrtSearcher(deploy_model['export'])
    with pytest.warns(UserWarning, match=r'Skipped 2 of 3 files.*bad\.jpg'):
        index = s.build_index(str(tmp_path))
    assert [p.rsplit('/', 1)[1] for p in index.paths] == ['ok.png']
    with pytest.raises(ValueError, match='texts\\[0\\] is empty'):
        s.search('   ')
    with pytest.raises(ValueError, match='topk must be a positive int'):
        s.search('a man', topk=0)


def test_text_tokenizer_from_32_threads(deploy_model):
    """Two copies configured once: concurrent calls give the ids, masks and
    lengths of sequential ones (truncated to max_length 16)."""
    from concurrent.futures import ThreadPoolExecutor

    from mdrl_deploy import TextTokenizer, load_manifest
    manifest = load_manifest(deploy_model['export'])
    tok = TextTokenizer(manifest['files']['tokenizer'], 16)
    texts = [' '.join(['a man with a red bag'] * n) for n in range(1, 17)]
    expected = [(tok([t]), tok.lengths([t])) for t in texts]
    assert max(n for _, (n, ) in expected) > 16
    assert {e['input_ids'].shape[1] for e, _ in expected} >= {16}
    with ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda t: (tok([t]), tok.lengths([t])),
                            texts * 8))
    for (e, n), (g, m) in zip(expected * 8, got):
        assert n == m
        np.testing.assert_array_equal(e['input_ids'], g['input_ids'])
        np.testing.assert_array_equal(e['attention_mask'], g['attention_mask'])
    padded = TextTokenizer(manifest['files']['tokenizer'], 16,
                           pad_to_max_length=True)(['a man'])
    assert padded['input_ids'].shape == (1, 16)
    assert padded['attention_mask'].tolist() == [[1] * 4 + [0] * 12]

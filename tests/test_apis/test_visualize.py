"""The result picture: PNG with green/red frames for matches."""
import cv2
import numpy as np
import pytest

from mdrl_deploy import SearchHit
from mdrl_plugin.apis import draw_search_results


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(3):
        p = str(tmp_path / f'{i}.png')
        cv2.imwrite(p, np.full((64, 32, 3), 128, np.uint8))  # plain grey
        paths.append(p)
    return paths


def count_color(png, rgb, tol=12):
    img = cv2.cvtColor(cv2.imread(png), cv2.COLOR_BGR2RGB).astype(int)
    return int((np.abs(img - np.array(rgb)).max(-1) <= tol).sum())


GREEN, RED = (0x1a, 0x96, 0x41), (0xd7, 0x19, 0x1c)


def test_png_with_match_frames(images, tmp_path):
    hits = [SearchHit(rank=i + 1, path=p, score=0.9 - i / 10, label=i % 2)
            for i, p in enumerate(images)]
    out = str(tmp_path / 'r.png')
    assert draw_search_results(['a man in a red shirt'], [hits], out,
                               query_labels=[0]) == out
    assert open(out, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'
    assert count_color(out, GREEN) > 100  # ranks 1 and 3 (label 0)
    assert count_color(out, RED) > 100    # rank 2 (label 1)
    plain = str(tmp_path / 'plain.png')
    draw_search_results(['a man in a red shirt'], [hits], plain)
    assert count_color(plain, GREEN) == 0 and count_color(plain, RED) == 0


def test_layout_grows_with_queries_and_rows(images, tmp_path):
    hits = [SearchHit(rank=i + 1, path=images[i % 3], score=0.5)
            for i in range(12)]
    one = str(tmp_path / 'one.png')
    two = str(tmp_path / 'two.png')
    draw_search_results(['q'], [hits[:3]], one)
    draw_search_results(['q', 'a much longer query ' * 20], [hits, hits[:1]],
                        two, max_cols=5)
    h1, w1 = cv2.imread(one).shape[:2]
    h2, w2 = cv2.imread(two).shape[:2]
    assert w2 > w1 and h2 > 3 * h1  # 5 columns; 3 + 1 image rows


def test_unreadable_image_is_drawn_as_placeholder(tmp_path):
    out = str(tmp_path / 'r.png')
    draw_search_results(['q'], [[SearchHit(1, str(tmp_path / 'gone.jpg'),
                                           0.1)]], out)
    assert cv2.imread(out) is not None


def test_errors(images, tmp_path):
    with pytest.raises(ValueError, match='Got 2 queries and 1 result lists'):
        draw_search_results(['a', 'b'], [[]], str(tmp_path / 'x.png'))
    with pytest.raises(ValueError, match='Got 1 query labels for 2 queries'):
        draw_search_results(['a', 'b'], [[], []], str(tmp_path / 'x.png'),
                            query_labels=[1])

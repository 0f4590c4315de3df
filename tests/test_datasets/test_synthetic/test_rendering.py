"""mdrl_plugin.datasets.synthetic.rendering: the pictures show what the
captions say."""
import dataclasses

import cv2
import numpy as np
import pytest

from mdrl_plugin.datasets.synthetic import (
    COLOURS,
    ITEMS,
    SHOE_COLOURS,
    encode_jpeg,
    render_image,
    sample_identities,
)

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], np.float64)


def _through_jpeg(img: np.ndarray) -> np.ndarray:
    buf = np.frombuffer(encode_jpeg(img), np.uint8)
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _seen_colour(ident, field: str, colour: str, other: str,
                 seed: int) -> tuple:
    """Render ``ident`` with ``field`` = colour and = other (same pose,
    lighting, background); the pixels that change are that attribute.
    Returns the nearest palette name of their median and their area."""
    imgs = [
        _through_jpeg(
            render_image(
                dataclasses.replace(ident, **{field: c}),
                np.random.default_rng([seed, ident.pid])))
        for c in (colour, other)
    ]
    changed = np.abs(imgs[0].astype(int) - imgs[1].astype(int)).sum(-1) > 90
    median = np.median(imgs[0][changed], axis=0)
    name = _NAMES[int(np.argmin(((_PALETTE - median)**2).sum(1)))]
    return name, changed.mean()


def test_images_are_pedestrian_sized_jpegs():
    ident = sample_identities(3, [1, 1, 1], 0)[0]
    for k in range(5):
        img = render_image(ident, np.random.default_rng(k))
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape[2] == 3
        assert 64 <= w <= 96 and 160 <= h <= 240 and 2.0 <= h / w <= 3.0
        data = encode_jpeg(img)
        assert data[:3] == b'\xff\xd8\xff'
        assert np.abs(_through_jpeg(img).astype(int) - img).mean() < 4


@pytest.mark.parametrize('field,min_area', [('upper_colour', 0.07),
                                            ('lower_colour', 0.03),
                                            ('shoe_colour', 0.004)])
def test_garment_colours_stay_recognisable(field, min_area):
    identities = sample_identities(40, [30, 5, 5], 1)
    chosen = [i for i in identities if getattr(i, field)][:4]
    allowed = SHOE_COLOURS if field == 'shoe_colour' else _NAMES
    for ident in chosen:
        for k, colour in enumerate(allowed):
            other = allowed[(k + len(allowed) // 2) % len(allowed)]
            name, area = _seen_colour(ident, field, colour, other, seed=k)
            assert name == colour, (ident, field, colour, name)
            assert area >= min_area, (ident, field, colour, area)


def test_carried_items_are_visible_in_their_colour():
    identities = sample_identities(60, [50, 5, 5], 2)
    results = []
    for item in ITEMS:
        ident = next(i for i in identities if i.item == item)
        for k, colour in enumerate(_NAMES):
            name, area = _seen_colour(
                ident, 'item_colour', colour, _NAMES[(k + 5) % 11], seed=k)
            assert area >= 0.008, (item, colour, area)
            results.append(name == colour)
    # small items lose a little colour to blur and outlines, rarely
    assert np.mean(results) >= 0.95

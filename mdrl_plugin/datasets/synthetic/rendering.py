"""Rendering: a person drawn with OpenCV primitives on a street-like scene.

Each image draws the person in a random pose, scale, position, background and
lighting, supersampled and downscaled; the pixels depend only on the random
generator given (same state, same bytes).
"""
import colorsys
from typing import Sequence, Tuple

import cv2
import numpy as np

from .attributes import COLOURS, HAIR_COLOURS, SKIN_TONES, Colour, Identity

#: JPEG quality of the written images.
JPEG_QUALITY = 90
#: Drawing resolution factor (drawn at SUPERSAMPLE x, then downscaled).
SUPERSAMPLE = 2


def _muted(rng: np.random.Generator, max_sat: float = 0.35,
           val: Tuple[float, float] = (0.3, 0.9)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.0, max_sat),
                                  rng.uniform(*val))
    return np.array([r, g, b], np.float32) * 255


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradient, ground, clutter and texture (float32 RGB, h x w)."""
    c1, c2 = _muted(rng), _muted(rng)
    mode = rng.integers(3)
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    t = ys + 0 * xs if mode == 0 else (xs + 0 * ys if mode == 1 else
                                       (xs + ys) / 2)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    if rng.random() < 0.8:  # ground / pavement
        horizon = int(h * rng.uniform(0.55, 0.8))
        g = _muted(rng, 0.15, (0.35, 0.75))
        fade = np.linspace(0.85, 1.1, h - horizon, dtype=np.float32)
        img[horizon:] = g * fade[:, None, None]
        for _ in range(rng.integers(0, 3)):
            x0 = int(rng.uniform(-0.5, 1.5) * w)
            cv2.line(img, (x0, horizon), (int(w / 2 + (x0 - w / 2) * 3), h),
                     (g * 0.8).tolist(), max(1, w // 60), cv2.LINE_AA)
    for _ in range(rng.integers(2, 7)):  # clutter
        col = (_muted(rng, 0.7, (0.25, 0.95))
               if rng.random() < 0.25 else _muted(rng)).tolist()
        kind = rng.integers(4)
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        if kind == 0:  # building block / window
            bw, bh = int(rng.uniform(0.1, 0.5) * w), int(
                rng.uniform(.05, .3) * h)
            cv2.rectangle(img, (x, y), (x + bw, y + bh), col, -1)
        elif kind == 1:  # pole
            cv2.rectangle(img, (x, y), (x + max(2, w // 25), h), col, -1)
        elif kind == 2:  # bush / sign
            cv2.circle(img, (x, y), int(rng.uniform(0.05, 0.2) * w), col, -1,
                       cv2.LINE_AA)
        else:  # edge / line
            cv2.line(img, (x, y),
                     (int(rng.uniform(0, w)), int(rng.uniform(0, h))), col,
                     max(1, w // 50), cv2.LINE_AA)
    coarse = rng.normal(0, rng.uniform(4, 12), (h // 16 + 2, w // 16 + 2, 1))
    img += cv2.resize(coarse.astype(np.float32), (w, h),
                      interpolation=cv2.INTER_CUBIC)[..., None]
    return img


class _Figure:
    """Draws a person on a float RGB canvas in body units (height = 1)."""

    def __init__(self, canvas: np.ndarray, cx: float, top: float, h: float,
                 facing: int) -> None:
        self.c, self.cx, self.top, self.h, self.d = canvas, cx, top, h, facing

    def pt(self, x: float, y: float) -> Tuple[int, int]:
        return (int(round(self.cx + self.d * x * self.h)),
                int(round(self.top + y * self.h)))

    def th(self, t: float) -> int:
        return max(1, int(round(t * self.h)))

    def poly(self, pts: Sequence[Tuple[float, float]], col: Colour,
             outline: bool = True) -> None:
        arr = np.array([self.pt(x, y) for x, y in pts], np.int32)
        cv2.fillPoly(self.c, [arr], col, cv2.LINE_AA)
        if outline:
            cv2.polylines(self.c, [arr], True, _shade(col, 0.6), self.th(.006),
                          cv2.LINE_AA)

    def line(self, p0: Tuple[float, float], p1: Tuple[float, float], t: float,
             col: Colour) -> None:
        cv2.line(self.c, self.pt(*p0), self.pt(*p1), col, self.th(t),
                 cv2.LINE_AA)

    def circle(self, p: Tuple[float, float], r: float, col: Colour) -> None:
        cv2.circle(self.c, self.pt(*p), self.th(r), col, -1, cv2.LINE_AA)

    def ellipse(self, p: Tuple[float, float], ax: Tuple[float, float],
                a0: float, a1: float, col: Colour) -> None:
        # mirrored figures mirror the arc too
        if self.d < 0:
            a0, a1 = 180 - a1, 180 - a0
        cv2.ellipse(self.c, self.pt(*p), (self.th(ax[0]), self.th(ax[1])), 0,
                    a0, a1, col, -1, cv2.LINE_AA)


def _shade(col: Colour, f: float) -> Colour:
    return tuple(float(min(255, v * f)) for v in col)


def _jitter(rng: np.random.Generator, col: Colour,
            amount: float = 8) -> Colour:
    return tuple(
        float(np.clip(v + rng.uniform(-amount, amount), 0, 255)) for v in col)


def _limb(p0: Tuple[float, float], angle_deg: float,
          length: float) -> Tuple[float, float]:
    a = np.deg2rad(angle_deg)
    return (p0[0] + length * np.sin(a), p0[1] + length * np.cos(a))


def _draw_person(fig: _Figure, ident: Identity,
                 rng: np.random.Generator) -> None:
    """Draw ``ident`` facing +x in body units (head top 0, soles 1)."""
    woman = ident.gender == 'woman'
    skin = _jitter(rng, SKIN_TONES[ident.skin], 5)
    hair = _jitter(rng, HAIR_COLOURS[ident.hair_colour], 6)
    up = _jitter(rng, COLOURS[ident.upper_colour])
    low = _jitter(rng,
                  COLOURS[ident.lower_colour]) if ident.lower_colour else up
    shoe = _jitter(rng, COLOURS[ident.shoe_colour])
    item = _jitter(rng, COLOURS[ident.item_colour]) if ident.item else None
    sw = 0.112 if woman else 0.13  # shoulder half width
    ww = 0.085 if woman else 0.1  # waist half width
    hw = 0.1 if woman else 0.095  # hip half width
    y_sh, y_waist, y_hip = 0.165, 0.455, 0.49

    # pose: walking stride, arm spread and swing
    stride = rng.uniform(-4, 14)  # > 0: legs apart, < 0: slightly crossed
    knee = rng.uniform(0, 12)
    hips = [(-0.045, y_hip), (0.045, y_hip)]
    legs = []
    for i, hip in enumerate(hips):
        a = stride if i == 1 else -stride
        k = _limb(hip, a, 0.245)
        an = _limb(k, a - (knee if a < 0 else knee * 0.3), 0.24)
        legs.append((hip, k, an))
    # stand on the lowest foot: lift the figure so that foot sits at y = 0.96
    low_y = max(leg[2][1] for leg in legs)
    legs = [tuple((x, y + 0.96 - low_y) if j > 0 else (x, y)
                  for j, (x, y) in enumerate(leg)) for leg in legs]
    arms = []
    for side in (-1, 1):
        sh = (side * (sw - 0.018), y_sh + 0.012)
        a = side * rng.uniform(2, 14) + rng.uniform(-6, 6)  # outward + swing
        bend = rng.uniform(-5, 20) * side
        if ident.item == 'handbag' and side > 0:
            a = rng.uniform(2, 8)
            bend = 0.0
        if ident.item == 'umbrella' and side > 0:
            el = _limb(sh, 30, 0.15)
            hand = (el[0] + 0.01, el[1] - 0.12)
            arms.append((sh, el, hand))
            continue
        el = _limb(sh, a, 0.16)
        arms.append((sh, el, _limb(el, a + bend, 0.15)))

    long_sleeve = ident.upper_type not in ('t-shirt', 'dress')
    sleeve_t = 0.06 if ident.upper_type in ('coat', 'jacket') else 0.052

    # long hair, back part (behind the body)
    if woman:
        fig.poly([(-0.075, 0.05), (0.045, 0.05), (0.06, 0.2), (-0.1, 0.27)],
                 hair, outline=False)
    # backpack body behind the torso
    if ident.item == 'backpack':
        fig.poly([(-sw - 0.075, 0.2), (-sw + 0.03, 0.175), (-sw + 0.03, 0.44),
                  (-sw - 0.08, 0.43)], item)
    # legs
    for hip, k, an in legs:
        fig.line(hip, k, 0.07, skin)
        fig.line(k, an, 0.058, skin)
        if ident.lower_type == 'trousers':
            fig.line(hip, k, 0.085, low)
            fig.line(k, (an[0], an[1] - 0.005), 0.072, low)
        elif ident.lower_type == 'shorts':
            mid = (hip[0] + 0.55 * (k[0] - hip[0]),
                   hip[1] + 0.55 * (k[1] - hip[1]))
            fig.line(hip, mid, 0.09, low)
        fig.ellipse((an[0] + 0.018, an[1] + 0.015), (0.045, 0.024), 180, 360,
                    shoe)
        x0, x1 = an[0] - 0.027, an[0] + 0.063
        fig.poly([(x0, an[1] + 0.015), (x1, an[1] + 0.015),
                  (x1, an[1] + 0.03), (x0, an[1] + 0.03)], shoe, outline=False)
    # lower garment body part
    if ident.lower_type in ('trousers', 'shorts'):
        fig.poly([(-ww, y_waist), (ww, y_waist), (hw + 0.005, 0.56),
                  (-hw - 0.005, 0.56)], low)
    elif ident.lower_type == 'skirt':
        fig.poly([(-ww, y_waist), (ww, y_waist), (0.15, 0.69), (-0.15, 0.69)],
                 low)
    # torso / upper garment
    hem = {'coat': 0.72, 'jacket': 0.5,
           'dress': 0.7}.get(ident.upper_type, 0.48)
    if ident.upper_type == 'coat':
        fig.poly([(-sw, y_sh), (sw, y_sh), (ww + 0.01, y_waist), (0.13, hem),
                  (-0.13, hem), (-ww - 0.01, y_waist)], up)
    elif ident.upper_type == 'dress':
        fig.poly([(-sw, y_sh), (sw, y_sh), (ww, y_waist), (0.16, hem),
                  (-0.16, hem), (-ww, y_waist)], up)
    else:
        fig.poly([(-sw, y_sh), (sw, y_sh), (ww + 0.005, hem),
                  (-ww - 0.005, hem)], up)
    for side in (-1, 1):
        fig.circle((side * (sw - 0.02), y_sh + 0.018), 0.028, up)
    # neck and head
    fig.line((0.0, 0.11), (0.0, y_sh + 0.005), 0.045, skin)
    head = (0.008, 0.072)
    fig.circle(head, 0.062, skin)
    fig.circle((0.045, 0.07), 0.007, (30, 25, 25))  # eye on the facing side
    # hair on top (short cut or the front of long hair)
    fig.ellipse((head[0] - 0.008, head[1] - 0.005), (0.066, 0.058), 180, 360,
                hair)
    fig.ellipse((head[0] - 0.035, head[1] + 0.005), (0.035, 0.05), 90, 270,
                hair)
    if woman:
        fig.poly([(-0.07, 0.06), (-0.035, 0.08), (-0.05, 0.24),
                  (-0.095, 0.25)], hair, outline=False)
    if ident.hat_colour:
        hat = _jitter(rng, COLOURS[ident.hat_colour])
        fig.ellipse((head[0], head[1] - 0.012), (0.07, 0.062), 180, 360, hat)
        fig.poly([(head[0] - 0.05, head[1] - 0.016),
                  (head[0] + 0.11, head[1] - 0.018),
                  (head[0] + 0.11, head[1] - 0.004),
                  (head[0] - 0.05, head[1] - 0.004)], hat)
    # arms
    for sh, el, hand in arms:
        if long_sleeve:
            fig.line(sh, el, sleeve_t, up)
            fig.line(el, hand, sleeve_t * 0.85, up)
        else:
            fig.line(el, hand, 0.042, skin)
            mid = (sh[0] + 0.7 * (el[0] - sh[0]),
                   sh[1] + 0.7 * (el[1] - sh[1]))
            fig.line(sh, el, 0.046, skin)
            fig.line(sh, mid, sleeve_t, up)
        fig.circle(hand, 0.025, skin)
    # garment details
    dark = _shade(up, 0.55)
    if ident.upper_type == 'shirt':
        fig.poly([(-0.04, y_sh - 0.005), (0.0, y_sh + 0.04),
                  (0.04, y_sh - 0.005)], _shade(up, 0.8))
        for y in (0.24, 0.3, 0.36, 0.42):
            fig.circle((0.012, y), 0.006, dark)
    elif ident.upper_type == 'jacket':
        fig.line((0.01, y_sh + 0.01), (0.012, hem - 0.005), 0.01, dark)
        fig.poly([(-0.05, y_sh - 0.01), (0.01, y_sh + 0.05),
                  (0.06, y_sh - 0.01)], _shade(up, 0.8))
    elif ident.upper_type == 'coat':
        for y in (0.26, 0.36, 0.46, 0.56):
            fig.circle((0.03, y), 0.007, dark)
        fig.line((-ww - 0.01, y_waist), (ww + 0.01, y_waist), 0.014, dark)
    elif ident.upper_type == 'sweater':
        fig.line((-ww, hem - 0.015), (ww, hem - 0.015), 0.025,
                 _shade(up, 0.75))
        fig.ellipse((0.0, y_sh - 0.004), (0.04, 0.02), 0, 180,
                    _shade(up, 0.75))
    elif ident.upper_type == 't-shirt':
        fig.ellipse((0.0, y_sh - 0.004), (0.035, 0.018), 0, 180, skin)
    elif ident.upper_type == 'dress':
        fig.line((-ww, y_waist), (ww, y_waist), 0.01, dark)
    # carried items in front
    if ident.item == 'backpack':
        for x in (-sw + 0.035, sw - 0.04):
            fig.line((x, y_sh + 0.005), (x + 0.008, 0.36), 0.018, item)
    elif ident.item == 'shoulder bag':
        fig.line((sw - 0.03, y_sh + 0.005), (-hw, 0.43), 0.018, item)
        fig.poly([(-hw - 0.07, 0.42), (-hw + 0.035, 0.42), (-hw + 0.035, 0.53),
                  (-hw - 0.07, 0.53)], item)
    elif ident.item == 'handbag':
        hand = arms[1][2]
        fig.line((hand[0] - 0.03, hand[1] + 0.03), hand, 0.01,
                 _shade(item, .7))
        fig.line((hand[0] + 0.03, hand[1] + 0.03), hand, 0.01,
                 _shade(item, .7))
        fig.poly([(hand[0] - 0.045, hand[1] + 0.03),
                  (hand[0] + 0.045, hand[1] + 0.03),
                  (hand[0] + 0.06, hand[1] + 0.11),
                  (hand[0] - 0.06, hand[1] + 0.11)], item)
    elif ident.item == 'umbrella':
        hand = arms[1][2]
        fig.line((hand[0], hand[1] + 0.05), (hand[0] - 0.02, -0.05), 0.01,
                 (45, 40, 40))
        centre = (hand[0] - 0.07, -0.035)
        fig.ellipse(centre, (0.2, 0.11), 180, 360, item)
        for dx in (-0.13, -0.045, 0.045, 0.13):
            fig.line(centre, (centre[0] + dx, -0.035), 0.006,
                     _shade(item, 0.7))
        fig.circle(hand, 0.025, skin)


def _lighting(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, colour cast and a soft light gradient."""
    h, w = img.shape[:2]
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.9, 1.1) + mean
    img = img * rng.uniform(0.9, 1.1)
    img = img * rng.uniform(0.95, 1.05, size=3).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi)
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    grad = 1 + rng.uniform(0, 0.12) * (np.cos(ang) * xs + np.sin(ang) * ys)
    return img * grad[..., None]


def render_image(ident: Identity, rng: np.random.Generator) -> np.ndarray:
    """Render one picture of ``ident``.

    Args:
        ident: The person.
        rng: Random generator (pose, size, background, lighting, noise).

    Returns:
        An RGB uint8 image about 64-96 px wide and 160-240 px high.
    """
    w = int(rng.integers(64, 97))
    h = int(np.clip(round(w * rng.uniform(2.35, 2.65)), 160, 240))
    S = SUPERSAMPLE
    # the background is smooth: draw it at 1x and upsample
    canvas = cv2.resize(
        _background(rng, h, w), (w * S, h * S), interpolation=cv2.INTER_LINEAR)
    y_top = -0.16 if ident.item == 'umbrella' else 0.0
    frac = rng.uniform(0.8, 0.93)
    body = frac * h * S / (1.0 - y_top)
    bottom = h * S * (1 - rng.uniform(0.01, 0.05))
    cx = w * S * (0.5 + rng.uniform(-0.06, 0.06))
    facing = 1 if rng.random() < 0.5 else -1
    _draw_person(_Figure(canvas, cx, bottom - body, body, facing), ident, rng)
    img = _lighting(
        cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA), rng)
    img += rng.normal(0, rng.uniform(1.5, 4.5), img.shape).astype(np.float32)
    if rng.random() < 0.35:
        img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.4, 0.8))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(img: np.ndarray) -> bytes:
    """JPEG bytes of an RGB image (quality 90, full-resolution chroma).

    Full-resolution (4:4:4) chroma keeps the colours of small parts (shoes,
    bags, hats) intact; 4:2:0 would smear them into their surroundings.

    Args:
        img: RGB uint8 image.

    Returns:
        The encoded file.
    """
    ok, buf = cv2.imencode('.jpg', cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [
        cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
    ])
    if not ok:
        raise RuntimeError('OpenCV could not encode a JPEG image')
    return buf.tobytes()

#!/usr/bin/env python
"""Generate a synthetic text-based person search dataset (CUHK-PEDES layout).

Usage::

    python tools/make_demo_data.py OUT [--num-ids 300] [--images-per-id 4]
        [--seed 0] [--splits 200,50,50] [--overwrite]
        [--contact-sheet PATH]

writes ``OUT/imgs/<split>_query/p<id>_s<n>.jpg`` and ``OUT/reid_raw.json``, a
JSON list of records exactly as the CUHK-PEDES release ships them::

    {"split": "train" | "val" | "test", "captions": [str, str],
     "file_path": "train_query/p00001_s00001.jpg",   # relative to imgs/
     "processed_tokens": [[...], [...]], "id": 1}     # 1-based identity

Every identity is a unique combination of attributes (gender, upper garment
type and colour, lower garment type and colour, shoe colour, optional carried
item and its colour, optional hat and its colour). Each image draws that
person with OpenCV primitives in a random pose, scale, position, background
and lighting, and carries two captions from varied templates that name every
one of those attributes. Identities are numbered train first, then val, then
test; the splits are identity-disjoint and drawn the same way (val and test
are as hard as train). ``--separated-eval`` draws an easier, labelled variant
whose evaluation identities differ pairwise in more attributes.

Everything is deterministic for a seed: the same arguments give byte-identical
JSON and images.
"""
import argparse
import colorsys
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = [
    'COLOURS', 'SHOE_COLOURS', 'HAT_COLOURS', 'ITEMS', 'OUTFITS', 'Identity',
    'num_combinations', 'sample_identities', 'make_captions', 'tokenize',
    'render_image', 'encode_jpeg', 'generate', 'make_contact_sheet',
    'parse_args', 'main'
]

Colour = Tuple[int, int, int]

#: Named colours (RGB), chosen to stay distinct under the lighting changes.
COLOURS: Dict[str, Colour] = {
    'red': (205, 25, 30),
    'blue': (25, 65, 210),
    'green': (25, 150, 45),
    'yellow': (245, 225, 25),
    'black': (22, 22, 24),
    'white': (242, 242, 238),
    'gray': (128, 128, 128),
    'orange': (245, 115, 0),
    'purple': (120, 35, 165),
    'pink': (245, 105, 180),
    'brown': (115, 65, 25),
}
#: Shoe colours (a subset of :data:`COLOURS`).
SHOE_COLOURS: Tuple[str,
                    ...] = ('black', 'white', 'brown', 'gray', 'red', 'blue')
#: Hat colours (a subset of :data:`COLOURS`).
HAT_COLOURS: Tuple[str, ...] = tuple(COLOURS)
#: Colours of carried items (a subset of :data:`COLOURS`).
ITEM_COLOURS: Tuple[str, ...] = tuple(COLOURS)
#: Carried items.
ITEMS: Tuple[str, ...] = ('backpack', 'handbag', 'shoulder bag', 'umbrella')
UPPER_TYPES: Tuple[str, ...] = ('t-shirt', 'shirt', 'jacket', 'sweater')
#: Valid (gender, upper garment, lower garment) outfits. A coat hides shorts
#: and skirts, so it only goes with trousers; a dress has no lower garment.
OUTFITS: Tuple[Tuple[str, str, Optional[str]],
               ...] = tuple([('man', u, lo) for u in UPPER_TYPES
                             for lo in ('trousers', 'shorts')] +
                            [('man', 'coat', 'trousers')] +
                            [('woman', u, lo) for u in UPPER_TYPES
                             for lo in ('trousers', 'shorts', 'skirt')] +
                            [('woman', 'coat',
                              'trousers'), ('woman', 'dress', None)])

HAIR_COLOURS: Dict[str, Colour] = {
    'black': (28, 24, 22),
    'brown': (92, 58, 34),
    'blond': (212, 182, 112),
}
SKIN_TONES: Tuple[Colour,
                  ...] = ((236, 198, 168), (214, 166, 130), (170, 120, 86))

#: Words a caption may use for each attribute value (first = canonical).
SYNONYMS: Dict[str, Tuple[str, ...]] = {
    'man': ('man', 'young man', 'guy', 'gentleman', 'male pedestrian'),
    'woman': ('woman', 'young woman', 'lady', 'girl', 'female pedestrian'),
    't-shirt': ('t-shirt', 'tee', 'short-sleeved shirt'),
    'shirt': ('shirt', 'long-sleeved shirt', 'button-up shirt'),
    'jacket': ('jacket', 'zip-up jacket'),
    'sweater': ('sweater', 'jumper', 'pullover'),
    'coat': ('coat', 'overcoat', 'winter coat'),
    'dress': ('dress', 'short-sleeved dress'),
    'trousers': ('trousers', 'pants', 'long pants'),
    'shorts': ('shorts', 'short pants'),
    'skirt': ('skirt', 'knee-length skirt'),
    'shoes': ('shoes', 'sneakers'),
    'backpack': ('backpack', 'rucksack'),
    'handbag': ('handbag', 'purse'),
    'shoulder bag': ('shoulder bag', 'messenger bag', 'crossbody bag'),
    'umbrella': ('umbrella', ),
    'hat': ('hat', 'cap'),
    'gray': ('gray', 'grey'),
}
PLURAL_NOUNS = {
    'trousers', 'pants', 'long pants', 'shorts', 'short pants', 'shoes',
    'sneakers'
}

SPLITS = ('train', 'val', 'test')
JPEG_QUALITY = 90
SUPERSAMPLE = 2


@dataclass(frozen=True)
class Identity:
    """Attributes of one synthetic person.

    ``key`` holds the attributes the captions name; they are unique over the
    whole dataset. Hair colour and skin tone only add visual variety.
    """
    pid: int
    split: str
    gender: str
    upper_type: str
    upper_colour: str
    lower_type: Optional[str]
    lower_colour: Optional[str]
    shoe_colour: str
    item: Optional[str]
    item_colour: Optional[str]
    hat_colour: Optional[str]
    hair_colour: str
    skin: int

    @property
    def key(self) -> tuple:
        """The captioned attribute combination (unique per identity)."""
        return (self.gender, self.upper_type, self.upper_colour,
                self.lower_type, self.lower_colour, self.shoe_colour,
                self.item, self.item_colour, self.hat_colour)

    @property
    def colour_pair(self) -> Tuple[str, str]:
        """Colours of the two largest regions: upper and lower body."""
        return (self.upper_colour, self.lower_colour or self.upper_colour)


def num_combinations() -> int:
    """Number of distinct captioned attribute combinations.

    Returns:
        How many identities the generator can make at most.
    """
    n_colour = len(COLOURS)
    body = sum(n_colour * (n_colour if lo is not None else 1)
               for _, _, lo in OUTFITS)
    items = 1 + len(ITEMS) * len(ITEM_COLOURS)
    hats = 1 + len(HAT_COLOURS)
    return body * len(SHOE_COLOURS) * items * hats


# --------------------------------------------------------------------------
# identities
# --------------------------------------------------------------------------
def _draw_attributes(rng: np.random.Generator) -> dict:
    gender = 'man' if rng.random() < 0.5 else 'woman'
    outfits = [o for o in OUTFITS if o[0] == gender]
    if gender == 'man':
        weights = np.array([1.0] * len(outfits))
    else:  # coat and dress are one outfit each, other uppers three
        weights = np.array(
            [1.0 if o[1] not in ('dress', 'coat') else 2.0 for o in outfits])
    _, upper, lower = outfits[rng.choice(
        len(outfits), p=weights / weights.sum())]
    colours = list(COLOURS)
    has_item = rng.random() < 0.7
    has_hat = rng.random() < 0.3
    return dict(
        gender=gender,
        upper_type=upper,
        upper_colour=colours[rng.integers(len(colours))],
        lower_type=lower,
        lower_colour=(colours[rng.integers(len(colours))]
                      if lower is not None else None),
        shoe_colour=SHOE_COLOURS[rng.integers(len(SHOE_COLOURS))],
        item=ITEMS[rng.integers(len(ITEMS))] if has_item else None,
        item_colour=(ITEM_COLOURS[rng.integers(len(ITEM_COLOURS))]
                     if has_item else None),
        hat_colour=(HAT_COLOURS[rng.integers(len(HAT_COLOURS))]
                    if has_hat else None),
        hair_colour=str(rng.choice(list(HAIR_COLOURS), p=[0.5, 0.3, 0.2])),
        skin=int(rng.integers(len(SKIN_TONES))))


def _hamming(a: tuple, b: tuple) -> int:
    return sum(x != y for x, y in zip(a, b))


#: Separation tiers of an evaluation split, strictest first:
#: (distinct upper/lower colour pair, minimum number of differing attributes).
_EVAL_TIERS = ((True, 3), (True, 2), (False, 2), (False, 1))
_TIER_ATTEMPTS = 2000


def sample_identities(num_ids: int, splits: Sequence[int], seed: int,
                      separated_eval: bool = False
                      ) -> Tuple[List[Identity], List[str]]:
    """Draw ``num_ids`` identities with unique attribute combinations.

    By default every split is drawn the same way (plain uniqueness), so val
    and test are exactly as hard as train. With ``separated_eval`` (an easier
    variant, for comparison only) the evaluation splits get a stricter rule:
    within one of them identities differ in their (upper colour, lower
    colour) pair and in at least 3 captioned attributes; when a split is too
    large for that the rule relaxes step by step (a note says so) down to
    plain uniqueness. Test identities are drawn first, then val, then train.
    Identity numbers are 1-based: train first, then val, then test.

    Args:
        num_ids: Total number of identities.
        splits: Number of train, val and test identities (summing to
            ``num_ids``).
        seed: Random seed.
        separated_eval: Draw the easier, separated evaluation splits.

    Returns:
        The identities ordered by ``pid``, and notes about relaxed rules.
    """
    if sum(splits) != num_ids:
        raise ValueError(f'splits {list(splits)} sum to {sum(splits)}, '
                         f'expected --num-ids {num_ids}')
    if num_ids > num_combinations():
        raise ValueError(f'--num-ids {num_ids} exceeds the '
                         f'{num_combinations()} unique attribute combinations')
    rng = np.random.default_rng([seed, 0])
    taken = set()
    drawn: Dict[str, List[dict]] = {}
    notes: List[str] = []
    for split in ('test', 'val', 'train'):
        size = splits[SPLITS.index(split)]
        tiers = (_EVAL_TIERS if separated_eval and split != 'train' else
                 ((False, 1), ))
        tier = 0
        members: List[dict] = []
        while len(members) < size:
            pair_rule, min_diff = tiers[tier]
            found = None
            # the last tier is plain uniqueness: always satisfiable (capacity
            # was checked), so it retries without limit
            attempts = _TIER_ATTEMPTS if tier < len(tiers) - 1 else None
            n = 0
            while found is None and (attempts is None or n < attempts):
                n += 1
                cand = _draw_attributes(rng)
                key = (cand['gender'], cand['upper_type'],
                       cand['upper_colour'], cand['lower_type'],
                       cand['lower_colour'], cand['shoe_colour'], cand['item'],
                       cand['item_colour'], cand['hat_colour'])
                if key in taken:
                    continue
                pair = (cand['upper_colour'], cand['lower_colour']
                        or cand['upper_colour'])
                ok = True
                for m in members:
                    if pair_rule and pair == m['pair']:
                        ok = False
                        break
                    if min_diff > 1 and _hamming(key, m['key']) < min_diff:
                        ok = False
                        break
                if ok:
                    found = dict(cand, key=key, pair=pair)
            if found is None:
                tier += 1
                notes.append(
                    f'{split}: {size} identities do not fit separation rule '
                    f'{tiers[tier - 1]}; relaxed to {tiers[tier]} after '
                    f'{len(members)} identities')
                continue
            taken.add(found['key'])
            members.append(found)
        drawn[split] = members
    identities = []
    pid = 0
    for split in SPLITS:
        for attrs in drawn[split]:
            pid += 1
            attrs = {
                k: v
                for k, v in attrs.items() if k not in ('key', 'pair')
            }
            identities.append(Identity(pid=pid, split=split, **attrs))
    return identities, notes


# --------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------
def tokenize(caption: str) -> List[str]:
    """Lower-cased word tokens of a caption (punctuation dropped).

    Args:
        caption: A sentence.

    Returns:
        Its words, hyphenated words kept whole (``t-shirt``).
    """
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*", caption.lower())


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _colour_word(rng: np.random.Generator, colour: str) -> str:
    return _pick(rng, SYNONYMS.get(colour, (colour, )))


def _np(rng: np.random.Generator,
        colour: str,
        noun: str,
        article: bool = True) -> str:
    """Noun phrase such as 'an orange jacket' or 'a pair of blue shorts'."""
    words = f'{_colour_word(rng, colour)} {noun}'
    if noun in PLURAL_NOUNS:
        if article and noun != 'shoes' and rng.random() < 0.3:
            return f'a pair of {words}'
        return words
    if not article:
        return words
    return ('an ' if words[0] in 'aeiou' else 'a ') + words


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ', '.join(parts[:-1]) + ' and ' + parts[-1]


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _parts(ident: Identity, rng: np.random.Generator) -> dict:
    he = 'he' if ident.gender == 'man' else 'she'
    his = 'his' if ident.gender == 'man' else 'her'
    noun = _pick(rng, SYNONYMS[ident.gender])
    hair_len = 'short' if ident.gender == 'man' else 'long'
    hair = f'{hair_len} {ident.hair_colour} hair'
    upper = _np(rng, ident.upper_colour, _pick(rng,
                                               SYNONYMS[ident.upper_type]))
    lower = (
        _np(rng, ident.lower_colour, _pick(rng, SYNONYMS[ident.lower_type]))
        if ident.lower_type else None)
    shoes = _np(rng, ident.shoe_colour, _pick(rng, SYNONYMS['shoes']))
    hat = (
        _np(rng, ident.hat_colour, _pick(rng, SYNONYMS['hat']))
        if ident.hat_colour else None)
    item = item_clause = None
    if ident.item:
        item = _np(rng, ident.item_colour, _pick(rng, SYNONYMS[ident.item]))
        clauses = {
            'backpack': (f'carrying {item}', f'with {item} on {his} back',
                         f'carrying {item} on {his} back'),
            'handbag': (f'carrying {item}', f'holding {item} in {his} hand',
                        f'with {item} in one hand'),
            'shoulder bag':
            (f'carrying {item}', f'with {item} over {his} shoulder',
             f'carrying {item} on one side'),
            'umbrella': (f'holding {item}', f'walking under {item}',
                         f'holding {item} over {his} head'),
        }[ident.item]
        item_clause = _pick(rng, clauses)
    clothes = [c for c in (upper, lower, shoes) if c]
    if rng.random() < 0.35:  # vary the attribute order
        order = rng.permutation(len(clothes))
        clothes = [clothes[i] for i in order]
    return dict(
        he=he,
        his=his,
        noun=noun,
        hair=hair,
        upper=upper,
        lower=lower,
        shoes=shoes,
        hat=hat,
        item=item,
        item_clause=item_clause,
        clothes=clothes,
        det=_pick(rng, ('a', 'the', 'this')))


def _hat_sentence(p: dict, rng: np.random.Generator) -> str:
    if not p['hat']:
        return ''
    return ' ' + _pick(rng, (
        f"{_cap(p['he'])} wears {p['hat']}.",
        f"{_cap(p['he'])} has {p['hat']} on {p['his']} head.",
        f"{_cap(p['he'])} also has {p['hat']} on.",
    ))


def _t_wears(p: dict, rng: np.random.Generator) -> str:
    s = f"{_cap(p['det'])} {p['noun']} wears {_join(p['clothes'])}"
    if p['item_clause']:
        s += f", {p['item_clause']}"
    return s + '.' + _hat_sentence(p, rng)


def _t_hair(p: dict, rng: np.random.Generator) -> str:
    s = (f"{_cap(p['det'])} {p['noun']} with {p['hair']} is wearing "
         f"{_join(p['clothes'])}.")
    if p['item_clause']:
        s += f" {_cap(p['he'])} is {p['item_clause']}."
    return s + _hat_sentence(p, rng)


def _t_in(p: dict, rng: np.random.Generator) -> str:
    worn = [c for c in (p['hat'], p['upper'], p['lower']) if c]
    s = f"{_cap(p['det'])} {p['noun']} in {_join(worn)}"
    s += f" is {p['item_clause']}." if p['item_clause'] else ' is walking.'
    return s + f" {_cap(p['he'])} has {p['shoes']} on {p['his']} feet."


def _t_this(p: dict, rng: np.random.Generator) -> str:
    s = (f"This {p['noun']} has {p['hair']}. {_cap(p['he'])} is wearing "
         f"{_join(p['clothes'] + ([p['hat']] if p['hat'] else []))}")
    if p['item_clause']:
        s += f" and is {p['item_clause']}"
    return s + '.'


def _t_item_first(p: dict, rng: np.random.Generator) -> str:
    worn = p['clothes'] + ([p['hat']] if p['hat'] else [])
    if p['item_clause']:
        return (f"{_cap(p['item_clause'])}, the {p['noun']} is dressed in "
                f"{_join(worn)}.")
    return f"The {p['noun']} is dressed in {_join(worn)} and carries nothing."


def _t_pedestrian(p: dict, rng: np.random.Generator) -> str:
    noun = p['noun'].replace(' pedestrian', '')  # no 'a male pedestrian'
    art = 'an' if noun[0] in 'aeiou' else 'a'
    worn = p['clothes'] + ([p['hat']] if p['hat'] else [])
    s = f"The pedestrian is {art} {noun} wearing {_join(worn)}"
    if p['item_clause']:
        s += f" and {p['item_clause']}"
    return s + '.'


def _t_wearing_first(p: dict, rng: np.random.Generator) -> str:
    s = f"Wearing {_join(p['clothes'])}, the {p['noun']} "
    if p['item_clause']:
        s += 'is ' + p['item_clause'] + '.'
    else:
        s += _pick(rng, ('walks down the street.', 'is walking alone.',
                         'stands on the pavement.'))
    return s + _hat_sentence(p, rng)


def _t_upper_lower(p: dict, rng: np.random.Generator) -> str:
    s = f"{_cap(p['det'])} {p['noun']} is wearing {p['upper']}"
    s += f" with {p['lower']}." if p['lower'] else '.'
    s += f" {_cap(p['he'])} has {p['shoes']}"
    if p['hat']:
        s += f" and {p['hat']}"
    s += '.'
    if p['item_clause']:
        s += f" {_cap(p['he'])} is {p['item_clause']}."
    return s


_TEMPLATES = (_t_wears, _t_hair, _t_in, _t_this, _t_item_first, _t_pedestrian,
              _t_wearing_first, _t_upper_lower)


def make_captions(ident: Identity,
                  rng: np.random.Generator,
                  num: int = 2) -> List[str]:
    """Captions of one image of ``ident`` from distinct templates.

    Every caption names the gender, the colour and type of every garment,
    the shoe colour, the carried item with its colour and the hat with its
    colour; the captions of one image differ in wording.

    Args:
        ident: The person.
        rng: Random generator.
        num: Number of captions (at most the number of templates).

    Returns:
        ``num`` distinct captions.
    """
    templates = rng.choice(len(_TEMPLATES), size=num, replace=False)
    captions: List[str] = []
    for t in templates:
        for _ in range(20):
            caption = _TEMPLATES[t](_parts(ident, rng), rng)
            if caption not in captions:
                break
        captions.append(caption)
    return captions


# --------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------
def _muted(
    rng: np.random.Generator,
    max_sat: float = 0.35,
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
    img += cv2.resize(
        coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)[...,
                                                                          None]
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

    def poly(self,
             pts: Sequence[Tuple[float, float]],
             col: Colour,
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


def _jitter(rng: np.random.Generator,
            col: Colour,
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
    legs = [
        tuple((x, y + 0.96 - low_y) if j > 0 else (x, y)
              for j, (x, y) in enumerate(leg)) for leg in legs
    ]
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
                 hair,
                 outline=False)
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
        fig.poly([(an[0] - 0.027, an[1] + 0.015),
                  (an[0] + 0.063, an[1] + 0.015),
                  (an[0] + 0.063, an[1] + 0.03),
                  (an[0] - 0.027, an[1] + 0.03)],
                 shoe,
                 outline=False)
    # lower garment body part
    if ident.lower_type in ('trousers', 'shorts'):
        fig.poly([(-ww, y_waist), (ww, y_waist), (hw + 0.005, 0.56),
                  (-hw - 0.005, 0.56)], low)
    elif ident.lower_type == 'skirt':
        fig.poly([(-ww, y_waist), (ww, y_waist), (0.15, 0.69), (-0.15, 0.69)],
                 low)
    # torso / upper garment
    hem = {
        'coat': 0.72,
        'jacket': 0.5,
        'dress': 0.7
    }.get(ident.upper_type, 0.48)
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
                  (-0.095, 0.25)],
                 hair,
                 outline=False)
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


# --------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------
def _default_splits(num_ids: int) -> List[int]:
    val = test = int(round(num_ids / 6))
    return [num_ids - val - test, val, test]


def _parse_splits(text: str) -> List[int]:
    parts = text.split(',')
    try:
        splits = [int(p) for p in parts]
    except ValueError:
        splits = []
    if len(parts) != 3 or len(splits) != 3 or min(splits) < 0:
        raise ValueError(f'--splits must be three non-negative integers '
                         f'TRAIN,VAL,TEST, got {text!r}')
    return splits


def _check_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f'OUT {out} exists and is not a directory')
    if os.path.isdir(out) and os.listdir(out) and not overwrite:
        raise ValueError(f'OUT {out} exists and is not empty; pass '
                         '--overwrite to replace its imgs/ and reid_raw.json')


def generate(out: str,
             num_ids: int = 300,
             images_per_id: int = 4,
             seed: int = 0,
             splits: Optional[Sequence[int]] = None,
             overwrite: bool = False,
             separated_eval: bool = False) -> dict:
    """Write the synthetic dataset to ``out``.

    Args:
        out: Output folder (the CUHK-PEDES root holding ``imgs/`` and
            ``reid_raw.json``).
        num_ids: Number of identities.
        images_per_id: Images per identity (two captions each).
        seed: Random seed; equal arguments give byte-identical output.
        splits: Train, val and test identity counts; default 2/3, 1/6, 1/6.
        overwrite: Replace ``imgs/`` and ``reid_raw.json`` of a non-empty
            ``out`` (other files there are kept).
        separated_eval: Draw the easier variant whose val/test identities
            are separated more strictly than train (see
            :func:`sample_identities`); off by default.

    Returns:
        A summary: ``{'out', 'json', 'identities', 'notes', 'seconds',
        'splits': {split: {'ids', 'images', 'captions'}}}``.

    Raises:
        ValueError: On bad arguments, with a message naming the argument.
    """
    t0 = time.perf_counter()
    if num_ids < 1:
        raise ValueError(f'--num-ids must be at least 1, got {num_ids}')
    if images_per_id < 1:
        raise ValueError(
            f'--images-per-id must be at least 1, got {images_per_id}')
    splits = list(splits) if splits is not None else _default_splits(num_ids)
    if len(splits) != 3 or min(splits) < 0:
        raise ValueError(f'--splits must be three non-negative integers '
                         f'TRAIN,VAL,TEST, got {splits}')
    if sum(splits) != num_ids:
        raise ValueError(f'--splits {",".join(map(str, splits))} sum to '
                         f'{sum(splits)}, expected --num-ids {num_ids}')
    if splits[0] < 1 or splits[2] < 1:
        raise ValueError(f'--splits needs at least one train and one test '
                         f'identity, got {",".join(map(str, splits))}')
    if num_ids > num_combinations():
        raise ValueError(f'--num-ids {num_ids} exceeds the '
                         f'{num_combinations()} unique attribute combinations')
    _check_out(out, overwrite)
    identities, notes = sample_identities(num_ids, splits, seed,
                                          separated_eval)

    img_root = os.path.join(out, 'imgs')
    json_path = os.path.join(out, 'reid_raw.json')
    if os.path.isdir(img_root):
        shutil.rmtree(img_root)
    if os.path.exists(json_path):
        os.remove(json_path)
    for split in SPLITS:
        os.makedirs(os.path.join(img_root, f'{split}_query'), exist_ok=True)

    records = []
    summary = {s: dict(ids=0, images=0, captions=0) for s in SPLITS}
    sample = 0
    for ident in identities:
        summary[ident.split]['ids'] += 1
        for k in range(images_per_id):
            sample += 1
            rng = np.random.default_rng([seed, ident.pid, k])
            img = render_image(ident, rng)
            captions = make_captions(ident, rng)
            rel = f'{ident.split}_query/p{ident.pid:05d}_s{sample:05d}.jpg'
            with open(os.path.join(img_root, rel), 'wb') as f:
                f.write(encode_jpeg(img))
            records.append({
                'split': ident.split,
                'captions': captions,
                'file_path': rel,
                'processed_tokens': [tokenize(c) for c in captions],
                'id': ident.pid,
            })
            summary[ident.split]['images'] += 1
            summary[ident.split]['captions'] += len(captions)
    with open(json_path, 'w') as f:
        json.dump(records, f)
    return dict(
        out=out,
        json=json_path,
        identities=identities,
        notes=notes,
        splits=summary,
        seconds=time.perf_counter() - t0)


def make_contact_sheet(out: str,
                       path: str,
                       num_ids: int = 8,
                       per_id: int = 2) -> str:
    """Tile sample images: one column per identity, ``per_id`` rows.

    Test identities come first, then val and train ones.

    Args:
        out: A folder written by :func:`generate`.
        path: Destination JPEG (quality 85, tiles 80x200).
        num_ids: Number of identities (columns).
        per_id: Images per identity (rows).

    Returns:
        ``path``.
    """
    with open(os.path.join(out, 'reid_raw.json')) as f:
        records = json.load(f)
    columns: Dict[int, list] = {}
    for split in ('test', 'val', 'train'):
        for r in records:
            if r['split'] != split:
                continue
            if r['id'] not in columns and len(columns) < num_ids:
                columns[r['id']] = []
            if r['id'] in columns and len(columns[r['id']]) < per_id:
                columns[r['id']].append(r['file_path'])
    tw, th, pad = 80, 200, 4
    sheet = np.full(
        (per_id * (th + pad) + pad, len(columns) * (tw + pad) + pad, 3), 255,
        np.uint8)
    for col, paths in enumerate(columns.values()):
        for row, rel in enumerate(paths):
            img = cv2.imread(os.path.join(out, 'imgs', rel))
            img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
            y, x = pad + row * (th + pad), pad + col * (tw + pad)
            sheet[y:y + th, x:x + tw] = img
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    cv2.imwrite(path, sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line arguments.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).

    Returns:
        The parsed namespace.
    """
    parser = argparse.ArgumentParser(
        description='Write a synthetic person search dataset in the '
        'CUHK-PEDES layout (imgs/ + reid_raw.json).')
    parser.add_argument('out', help='output folder (the CUHK-PEDES root)')
    parser.add_argument(
        '--num-ids',
        type=int,
        default=300,
        help='number of identities (default 300)')
    parser.add_argument(
        '--images-per-id',
        type=int,
        default=4,
        help='images per identity (default 4)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument(
        '--splits',
        default=None,
        help='TRAIN,VAL,TEST identity counts summing to '
        '--num-ids (default 2/3, 1/6, 1/6: 200,50,50 for 300)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace imgs/ and reid_raw.json of a non-empty '
        'OUT')
    parser.add_argument(
        '--separated-eval',
        action='store_true',
        help='EASIER variant: val/test identities differ pairwise in their '
        'garment colour pair and in >= 3 attributes (default: all splits '
        'drawn the same way, as hard as train)')
    parser.add_argument(
        '--contact-sheet',
        default=None,
        metavar='PATH',
        help='also save a JPEG grid of 16 sample images '
        '(8 identities x 2 images)')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Entry point: parse, generate, print the summary.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The summary of :func:`generate`.
    """
    args = parse_args(argv)
    try:
        splits = _parse_splits(args.splits) if args.splits else None
        result = generate(args.out, args.num_ids, args.images_per_id,
                          args.seed, splits, args.overwrite,
                          args.separated_eval)
    except ValueError as e:
        print(f'make_demo_data.py: error: {e}', file=sys.stderr)
        raise SystemExit(2)
    print(f'Wrote a synthetic CUHK-PEDES-style dataset to {result["out"]} '
          f'in {result["seconds"]:.1f} s')
    print(f'{"split":<6} {"ids":>5} {"images":>7} {"captions":>9}')
    for split, s in result['splits'].items():
        print(f'{split:<6} {s["ids"]:>5} {s["images"]:>7} {s["captions"]:>9}')
    print(f'annotations: {result["json"]}')
    print(f'images:      {os.path.join(result["out"], "imgs")}')
    for note in result['notes']:
        print(f'note: {note}')
    if args.contact_sheet:
        print(f'contact sheet: '
              f'{make_contact_sheet(args.out, args.contact_sheet)}')
    return result


if __name__ == '__main__':
    main()

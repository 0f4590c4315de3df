"""Captions: every caption names every captioned attribute of a person."""
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .attributes import Identity

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
#: Nouns used without an article ('blue shorts', not 'a blue shorts').
PLURAL_NOUNS = {
    'trousers', 'pants', 'long pants', 'shorts', 'short pants', 'shoes',
    'sneakers'
}


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


def _np(rng: np.random.Generator, colour: str, noun: str) -> str:
    """Noun phrase such as 'an orange jacket' or 'a pair of blue shorts'."""
    words = f'{_colour_word(rng, colour)} {noun}'
    if noun in PLURAL_NOUNS:
        if noun != 'shoes' and rng.random() < 0.3:
            return f'a pair of {words}'
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
    upper = _np(rng, ident.upper_colour,
                _pick(rng, SYNONYMS[ident.upper_type]))
    lower = (_np(rng, ident.lower_colour,
                 _pick(rng, SYNONYMS[ident.lower_type]))
             if ident.lower_type else None)
    shoes = _np(rng, ident.shoe_colour, _pick(rng, SYNONYMS['shoes']))
    hat = (_np(rng, ident.hat_colour, _pick(rng, SYNONYMS['hat']))
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
    return dict(he=he, his=his, noun=noun, hair=hair, upper=upper,
                lower=lower, shoes=shoes, hat=hat, item=item,
                item_clause=item_clause, clothes=clothes,
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


def make_captions(ident: Identity, rng: np.random.Generator,
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

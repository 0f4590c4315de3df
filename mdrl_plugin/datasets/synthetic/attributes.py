"""Attributes of the synthetic people and the draw of unique identities."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

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
SHOE_COLOURS: Tuple[str, ...] = ('black', 'white', 'brown', 'gray', 'red',
                                 'blue')
#: Hat colours.
HAT_COLOURS: Tuple[str, ...] = tuple(COLOURS)
#: Colours of carried items.
ITEM_COLOURS: Tuple[str, ...] = tuple(COLOURS)
#: Carried items.
ITEMS: Tuple[str, ...] = ('backpack', 'handbag', 'shoulder bag', 'umbrella')
#: Upper garments that go with a separate lower garment.
UPPER_TYPES: Tuple[str, ...] = ('t-shirt', 'shirt', 'jacket', 'sweater')
#: Valid (gender, upper garment, lower garment) outfits. A coat hides shorts
#: and skirts, so it only goes with trousers; a dress has no lower garment.
OUTFITS: Tuple[Tuple[str, str, Optional[str]], ...] = tuple(
    [('man', u, lo) for u in UPPER_TYPES for lo in ('trousers', 'shorts')] +
    [('man', 'coat', 'trousers')] +
    [('woman', u, lo) for u in UPPER_TYPES
     for lo in ('trousers', 'shorts', 'skirt')] +
    [('woman', 'coat', 'trousers'), ('woman', 'dress', None)])
#: Hair colours (not captioned: visual variety only).
HAIR_COLOURS: Dict[str, Colour] = {
    'black': (28, 24, 22),
    'brown': (92, 58, 34),
    'blond': (212, 182, 112),
}
#: Skin tones (not captioned).
SKIN_TONES: Tuple[Colour, ...] = ((236, 198, 168), (214, 166, 130),
                                  (170, 120, 86))
#: Split names, in identity-number order.
SPLITS = ('train', 'val', 'test')


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


def _draw_attributes(rng: np.random.Generator) -> dict:
    """One person's attributes (the order of the draws is part of the data:
    changing it changes every generated set)."""
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


def sample_identities(num_ids: int, splits: Sequence[int],
                      seed: int) -> List[Identity]:
    """Draw ``num_ids`` identities with unique attribute combinations.

    Every split is drawn the same way, so val and test are exactly as hard as
    train. Test identities are drawn first, then val, then train; identity
    numbers are 1-based: train first, then val, then test.

    Args:
        num_ids: Total number of identities.
        splits: Number of train, val and test identities (summing to
            ``num_ids``).
        seed: Random seed.

    Returns:
        The identities ordered by ``pid``.

    Raises:
        ValueError: The splits do not sum to ``num_ids``, or there are more
            identities than attribute combinations.
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
    for split in ('test', 'val', 'train'):
        drawn[split] = []
        while len(drawn[split]) < splits[SPLITS.index(split)]:
            attrs = _draw_attributes(rng)
            ident = Identity(pid=0, split=split, **attrs)
            if ident.key not in taken:
                taken.add(ident.key)
                drawn[split].append(attrs)
    pids = iter(range(1, num_ids + 1))
    return [Identity(pid=next(pids), split=split, **attrs)
            for split in SPLITS for attrs in drawn[split]]

"""A synthetic text-based person search dataset in the CUHK-PEDES layout.

Every identity is a unique combination of captioned attributes (gender, upper
garment type and colour, lower garment type and colour, shoe colour, optional
carried item and its colour, optional hat and its colour): see
:mod:`.attributes`. Each image draws that person (:mod:`.rendering`) and
carries two captions from varied templates that name every one of those
attributes (:mod:`.captions`). :func:`generate` writes the dataset
(``tools/make_demo_data.py`` is its command line); everything is
deterministic for a seed.
"""
from .attributes import (
    COLOURS,
    HAT_COLOURS,
    ITEM_COLOURS,
    ITEMS,
    OUTFITS,
    SHOE_COLOURS,
    SPLITS,
    Identity,
    num_combinations,
    sample_identities,
)
from .captions import SYNONYMS, make_captions, tokenize
from .rendering import encode_jpeg, render_image
from .writer import default_splits, generate, make_contact_sheet

__all__ = [
    'COLOURS', 'SHOE_COLOURS', 'HAT_COLOURS', 'ITEM_COLOURS', 'ITEMS',
    'OUTFITS', 'SPLITS', 'SYNONYMS', 'Identity', 'num_combinations',
    'sample_identities', 'make_captions', 'tokenize', 'render_image',
    'encode_jpeg', 'default_splits', 'generate', 'make_contact_sheet'
]

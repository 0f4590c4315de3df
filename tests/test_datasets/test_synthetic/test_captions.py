"""mdrl_plugin.datasets.synthetic.captions: what every caption names."""
import numpy as np

from mdrl_plugin.datasets.synthetic import (
    SYNONYMS,
    Identity,
    make_captions,
    sample_identities,
    tokenize,
)


def test_tokenize_keeps_hyphenated_words_and_drops_punctuation():
    assert tokenize('The man wears a red T-shirt, blue pants.') == [
        'the', 'man', 'wears', 'a', 'red', 't-shirt', 'blue', 'pants'
    ]


def _mentions(caption: str, colour: str, noun_key: str) -> bool:
    colours = SYNONYMS.get(colour, (colour, ))
    return any(f'{c} {n}' in caption for c in colours
               for n in SYNONYMS[noun_key])


def check_caption(caption: str, ident: Identity) -> None:
    """Assert that ``caption`` names every captioned attribute of ``ident``
    (colour right before the garment/item noun) and nothing it lacks."""
    low = caption.lower()
    words = ' ' + ' '.join(tokenize(caption)) + ' '
    assert any(f' {n} ' in words or f' {n.split()[-1]} ' in words
               for n in SYNONYMS[ident.gender]), caption
    other = 'she' if ident.gender == 'man' else 'he'
    assert f' {other} ' not in words, caption
    assert _mentions(low, ident.upper_colour, ident.upper_type), caption
    if ident.lower_type:
        assert _mentions(low, ident.lower_colour, ident.lower_type), caption
    assert _mentions(low, ident.shoe_colour, 'shoes'), caption
    if ident.item:
        assert _mentions(low, ident.item_colour, ident.item), caption
    else:
        assert not any(f' {n} ' in words
                       for n in ('bag', 'backpack', 'rucksack', 'handbag',
                                 'purse', 'umbrella')), caption
    if ident.hat_colour:
        assert _mentions(low, ident.hat_colour, 'hat'), caption
    else:
        assert ' hat ' not in words and ' cap ' not in words, caption
    assert caption[0].isupper() and caption.endswith('.'), caption
    assert '  ' not in caption and ' ,' not in caption, caption


def test_every_written_caption_names_every_attribute(tiny):
    _, result, records = tiny
    by_pid = {i.pid: i for i in result['identities']}
    for r in records:
        ident = by_pid[r['id']]
        assert ident.split == r['split']
        for caption in r['captions']:
            check_caption(caption, ident)


def test_all_templates_name_every_attribute():
    used = set()
    for ident in sample_identities(300, [200, 50, 50], 0):
        for k in range(3):
            captions = make_captions(ident, np.random.default_rng([9, k]))
            assert len(captions) == 2 and captions[0] != captions[1]
            for caption in captions:
                check_caption(caption, ident)
                used.add(' '.join(caption.split()[:2]))
    assert len(used) > 20  # many different openings


def test_captions_vary_between_images():
    ident = sample_identities(3, [1, 1, 1], 0)[0]
    captions = [
        c for k in range(6)
        for c in make_captions(ident, np.random.default_rng([0, 1, k]))
    ]
    assert len(set(captions)) == len(captions)
    first_words = {c.split()[0] for c in captions}
    assert len(first_words) >= 3  # different sentence structures


def test_articles_are_correct():
    ident = Identity(
        pid=1, split='train', gender='man', upper_type='jacket',
        upper_colour='orange', lower_type='trousers', lower_colour='blue',
        shoe_colour='white', item='umbrella', item_colour='orange',
        hat_colour=None, hair_colour='black', skin=0)
    for k in range(10):
        for c in make_captions(ident, np.random.default_rng(k)):
            assert ' a orange' not in c.lower() and 'an blue' not in c, c
            assert 'an orange jacket' in c or 'an orange zip-up jacket' in c

"""mdrl_plugin.datasets.synthetic.attributes: unique identities."""
import pytest

from mdrl_plugin.datasets.synthetic import OUTFITS, num_combinations, sample_identities


def test_num_combinations_by_hand():
    # outfits: man 4 uppers x {trousers, shorts} + coat/trousers = 9 with a
    # lower garment; woman 4 x {trousers, shorts, skirt} + coat/trousers = 13
    # with one, plus the dress without one.
    body = (9 + 13) * 11 * 11 + 11
    assert num_combinations() == body * 6 * (1 + 4 * 11) * (1 + 11)
    assert num_combinations() == 8_660_520


def _min_pairwise_diff(members) -> int:
    return min(
        sum(x != y for x, y in zip(members[a].key, members[b].key))
        for a in range(len(members)) for b in range(a))


def test_identities_are_unique_numbered_and_drawn_like_train():
    identities = sample_identities(300, [200, 50, 50], 0)
    assert [i.pid for i in identities] == list(range(1, 301))
    assert [i.split for i in identities
            ] == ['train'] * 200 + ['val'] * 50 + ['test'] * 50
    assert len({i.key for i in identities}) == 300
    for i in identities:
        assert (i.gender, i.upper_type, i.lower_type) in OUTFITS
        assert (i.item is None) == (i.item_colour is None)
        assert (i.lower_type is None) == (i.lower_colour is None)
    # no extra separation: with 50 identities drawn like train, some share
    # their garment colour pair and some differ in fewer than 3 attributes
    for split in ('val', 'test'):
        members = [i for i in identities if i.split == split]
        assert len({m.colour_pair for m in members}) < len(members)
    evaluation = [i for i in identities if i.split != 'train']
    assert _min_pairwise_diff(evaluation) < 3
    assert sample_identities(300, [200, 50, 50], 0) == identities


def test_bad_counts():
    with pytest.raises(ValueError, match=r'splits \[2, 1, 1\] sum to 4, '
                       'expected --num-ids 5'):
        sample_identities(5, [2, 1, 1], 0)
    n = num_combinations() + 1
    with pytest.raises(ValueError, match=f'--num-ids {n} exceeds the {n - 1}'):
        sample_identities(n, [n - 2, 1, 1], 0)

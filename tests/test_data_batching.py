"""Token-budget batching and collation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from varattn.data.text.batching import TokenBatcher, collate
from varattn.data.vocab import BOS, EOS, PAD

lengths = st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=0, max_size=200)


def padded_size(b, src, tgt):
    return len(b) * (src[b].max() + tgt[b].max() + 2)


@settings(max_examples=60, deadline=None)
@given(
    lengths, st.integers(1, 400), st.one_of(st.none(), st.integers(1, 16)), st.integers(0, 5), st.booleans()
)
def test_every_pair_once_deterministic_within_budget(pairs, max_tokens, max_sentences, seed, shuffle):
    src = np.array([p[0] for p in pairs], dtype=np.int64)
    tgt = np.array([p[1] for p in pairs], dtype=np.int64)
    b = TokenBatcher(src, tgt, max_tokens, max_sentences=max_sentences, shuffle=shuffle, seed=seed)
    for epoch in (0, 1):
        batches = b.batches(epoch)
        flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
        assert sorted(flat.tolist()) == list(range(len(pairs)))
        for bt in batches:
            assert len(bt) >= 1
            if len(bt) > 1:
                assert padded_size(bt, src, tgt) <= max_tokens
            if max_sentences is not None:
                assert len(bt) <= max_sentences
        again = TokenBatcher(src, tgt, max_tokens, max_sentences=max_sentences, shuffle=shuffle, seed=seed)
        assert all(np.array_equal(x, y) for x, y in zip(batches, again.batches(epoch)))
        assert len(batches) == len(again.batches(epoch))


def test_bucketing_groups_similar_lengths_and_shuffles_per_epoch():
    rng = np.random.default_rng(0)
    src = rng.integers(1, 50, size=2000)
    tgt = src + rng.integers(0, 3, size=2000)
    b = TokenBatcher(src, tgt, 1000, seed=3)
    e0, e1 = b.batches(0), b.batches(1)
    assert [x.tolist() for x in e0] != [x.tolist() for x in e1]
    # bucketing: little padding
    real = sum(int(src[x].sum() + tgt[x].sum() + 2 * len(x)) for x in e0)
    padded = sum(int(padded_size(x, src, tgt)) for x in e0)
    assert real / padded > 0.9
    # a different seed gives a different order
    assert [x.tolist() for x in TokenBatcher(src, tgt, 1000, seed=4).batches(0)] != [x.tolist() for x in e0]


def test_no_shuffle_is_fixed_and_sorted():
    src = np.array([5, 1, 3, 1, 9])
    tgt = np.array([5, 2, 3, 1, 9])
    b = TokenBatcher(src, tgt, 12, shuffle=False)
    assert [x.tolist() for x in b.batches(0)] == [x.tolist() for x in b.batches(7)]
    assert np.concatenate(b.batches(0)).tolist() == [3, 1, 2, 0, 4]


def test_oversized_pair_is_alone():
    b = TokenBatcher([100, 1, 1], [100, 1, 1], 10, shuffle=False)
    assert [x.tolist() for x in b.batches()] == [[1, 2], [0]]


def test_bad_arguments():
    with pytest.raises(ValueError):
        TokenBatcher([1, 2], [1], 10)
    with pytest.raises(ValueError):
        TokenBatcher([1], [1], 0)


class FakeSplit:
    def __init__(self, src, tgt):
        self._s, self._t = src, tgt

    def src(self, i):
        return np.array(self._s[i], dtype=np.int32)

    def tgt(self, i):
        return np.array(self._t[i], dtype=np.int32)


def test_collate():
    split = FakeSplit([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]])
    b = collate(split, np.array([1, 0]))
    assert b.src.dtype == torch.long and b.src.tolist() == [[8, PAD, PAD], [5, 6, 7]]
    assert b.src_lengths.tolist() == [1, 3]
    assert b.tgt_in.tolist() == [[BOS, 10, 11, 12, 13], [BOS, 9, PAD, PAD, PAD]]
    assert b.tgt_out.tolist() == [[10, 11, 12, 13, EOS], [9, EOS, PAD, PAD, PAD]]
    assert b.tgt_lengths.tolist() == [5, 2]
    assert b.indices.tolist() == [1, 0]
    assert len(b) == 2 and b.num_tgt_tokens == 7
    c = b.to("cpu")
    assert torch.equal(c.tgt_out, b.tgt_out)

"""Symmetrisation heuristics (Koehn et al. 2003) against hand-worked examples, soft symmetrisation, and word
matrices / link extraction from piece matrices."""

from __future__ import annotations

import itertools
from pathlib import Path
import random

import numpy as np
import pytest

from varattn.analysis import symmetrize as sym
from varattn.analysis import wordlinks
from varattn.analysis.align import END, PairAlignment

# Five source and five target words. Links are (source i, target j).
# forward (each target word's source word):  j0->0, j1->1, j2->3, j3->0, j4->4
FORWARD = {(0, 0), (1, 1), (3, 2), (0, 3), (4, 4)}
# reverse, transposed (each source word's target word): i0->0, i1->1, i2->1, i3->2, i4->0
REVERSE = {(0, 0), (1, 1), (2, 1), (3, 2), (4, 0)}


def test_intersect_and_union():
    assert sym.symmetrize(FORWARD, REVERSE, "intersect") == {(0, 0), (1, 1), (3, 2)}
    assert sym.symmetrize(FORWARD, REVERSE, "union") == {(0, 0), (1, 1), (3, 2), (0, 3), (4, 4), (2, 1), (4, 0)}


def test_grow_diag_worked_by_hand():
    # Start from the intersection {0-0, 1-1, 3-2}; aligned source words {0, 1, 3}, target words {0, 1, 2}.
    # 1-1's neighbour 2-1 is in the union and source word 2 is unaligned: added.
    # 3-2's union neighbours: 2-1 (already in). 0-3, 4-4 and 4-0 neighbour no alignment point: left out.
    assert sym.symmetrize(FORWARD, REVERSE, "grow-diag", 5, 5) == {(0, 0), (1, 1), (2, 1), (3, 2)}


def test_final_steps_worked_by_hand():
    # final (or): forward in order: 0-3 (target 3 unaligned) added, 4-4 (both unaligned) added; then reverse:
    # 4-0 — source 4 is now aligned and target 0 was — left out.
    assert sym.symmetrize(FORWARD, REVERSE, "grow-diag-final", 5, 5) == {(0, 0), (0, 3), (1, 1), (2, 1), (3, 2),
                                                                         (4, 4)}
    # final-and: 0-3 has source 0 aligned: left out; 4-4 has both unaligned: added; 4-0 then has source 4
    # aligned: left out.
    assert sym.symmetrize(FORWARD, REVERSE, "grow-diag-final-and", 5, 5) == {(0, 0), (1, 1), (2, 1), (3, 2), (4, 4)}


def test_grow_diag_needs_an_unaligned_word_and_follows_chains():
    # 0-1 neighbours both intersection points but its words are both aligned: never added.
    forward, reverse = {(0, 0), (1, 1), (0, 1)}, {(0, 0), (1, 1)}
    for heuristic in ("grow-diag", "grow-diag-final", "grow-diag-final-and"):
        assert sym.symmetrize(forward, reverse, heuristic) == {(0, 0), (1, 1)}
    # a diagonal chain grows from its one intersection point, link by link (diagonals are neighbours)
    forward, reverse = {(0, 0), (1, 1), (2, 2), (3, 3)}, {(0, 0), (3, 0)}
    assert sym.symmetrize(forward, reverse, "grow-diag") == {(0, 0), (1, 1), (2, 2), (3, 3)}
    # 3-0 is reachable from nothing; only the "or" final step can add it (target 0 aligned, source 3 too): no
    assert sym.symmetrize(forward, reverse, "grow-diag-final") == {(0, 0), (1, 1), (2, 2), (3, 3)}


def test_heuristics_nest_on_random_alignments():
    rng = random.Random(0)
    for _ in range(200):
        S, T = rng.randint(1, 7), rng.randint(1, 7)
        forward = {(rng.randrange(S), j) for j in range(T)}
        reverse = {(i, rng.randrange(T)) for i in range(S)}
        found = {h: sym.symmetrize(forward, reverse, h, S, T) for h in sym.HARD}
        assert found["intersect"] <= found["grow-diag"] <= found["grow-diag-final-and"] <= found["union"]
        assert found["grow-diag"] <= found["grow-diag-final"] <= found["union"] == forward | reverse
        # (final and final-and do not nest: an "or" link taken early can block a later "and" link)
        # every word the union aligns is aligned by grow-diag-final (its final step adds one link for it)
        for side in (0, 1):
            assert {link[side] for link in found["grow-diag-final"]} == {link[side] for link in found["union"]}


def test_soft_symmetrisation():
    forward = np.array([[0.9, 0.2], [0.1, 0.8]])  # [S, T]
    reverse = np.array([[0.6, 0.5], [0.4, 0.5]])
    np.testing.assert_allclose(sym.combine(forward, reverse, "soft-product"), [[0.54, 0.1], [0.04, 0.4]])
    np.testing.assert_allclose(sym.combine(forward, reverse, "soft-mean"), [[0.75, 0.35], [0.25, 0.65]])
    assert sym.soft_links(sym.combine(forward, reverse, "soft-product"), 0.3) == {(0, 0), (1, 1)}
    assert sym.soft_links(sym.combine(forward, reverse, "soft-mean"), 0.3) == {(0, 0), (0, 1), (1, 1)}
    assert sym.transpose({(0, 2), (1, 0)}) == {(2, 0), (0, 1)}
    with pytest.raises(ValueError):
        sym.symmetrize(FORWARD, REVERSE, "grow")


def _pair(src, tgt, matrix) -> PairAlignment:
    return PairAlignment(0, src, tgt + [END], {"posterior": np.asarray(matrix, dtype=float)}, {"posterior": 0.0})


def test_word_matrix_and_link_extraction_by_hand():
    # source words: "un@@ able" = word 0, "x" = word 1; target words: "a" = 0, "b@@ c" = 1
    rows = [[0.5, 0.3, 0.2],   # a
            [0.1, 0.1, 0.8],   # b@@
            [0.2, 0.2, 0.6],   # c
            [0.3, 0.3, 0.4]]   # </s>: left out
    pair = _pair(["un@@", "able", "x"], ["a", "b@@", "c"], rows)
    W = wordlinks.word_matrix(pair, "posterior")
    # W[i, j] = mean over j's pieces of the sum over i's pieces
    np.testing.assert_allclose(W, [[0.8, (0.2 + 0.4) / 2], [0.2, (0.8 + 0.6) / 2]])
    np.testing.assert_allclose(W.sum(0), 1.0)
    assert wordlinks.extract(W) == {(0, 0), (1, 1)}
    assert wordlinks.extract(W, threshold=0.75) == {(0, 0)}  # target word 1 (best 0.7) gets no link: NULL
    assert wordlinks.extract(W, "threshold", 0.25) == {(0, 0), (0, 1), (1, 1)}  # two source words for word 1
    found = wordlinks.one_direction([pair])
    assert found[0].links == [(0, 0), (1, 1)] and found[0].probs == pytest.approx([0.8, 0.7])
    assert found[0].src == ["unable", "x"] and found[0].tgt == ["a", "bc"]
    assert found[0].score == pytest.approx((np.log(0.8) + np.log(0.7)) / 2)


def test_two_directions_equal_symmetrising_each_direction_by_hand():
    rng = np.random.default_rng(1)
    S, T = 4, 3
    fw_rows = rng.dirichlet(np.ones(S), T + 1)          # [T + 1, S]: forward, target rows
    rv_rows = rng.dirichlet(np.ones(T), S + 1)          # [S + 1, T]: reverse, source rows
    src, tgt = [f"s{i}" for i in range(S)], [f"t{j}" for j in range(T)]
    fw, rv = _pair(src, tgt, fw_rows), _pair(tgt, src, rv_rows)
    forward = {(int(fw_rows[j].argmax()), j) for j in range(T)}
    reverse = {(i, int(rv_rows[i].argmax())) for i in range(S)}
    for heuristic in sym.HARD:
        found = wordlinks.two_directions([fw], [rv], heuristic)[0]
        assert set(found.links) == sym.symmetrize(forward, reverse, heuristic, S, T)
        mean = (fw_rows[:T].T + rv_rows[:S]) / 2  # [S, T]
        assert found.probs == pytest.approx([mean[i, j] for i, j in found.links])
    product = fw_rows[:T].T * rv_rows[:S]
    found = wordlinks.two_directions([fw], [rv], "soft-product", soft_threshold=0.1)[0]
    assert found.links == sorted((i, j) for i, j in itertools.product(range(S), range(T)) if product[i, j] >= 0.1)


def test_pictures_are_scaled_to_their_own_maximum():
    from varattn.analysis import pictures

    flat = np.full((3, 4), 0.25)  # a flat prior: the top of its colour scale is 0.25, not 1
    pair = PairAlignment(0, ["a", "b", "c", "d"], ["x", "y", END], {"prior": flat, "posterior": flat * 1.2},
                         {"prior": 0.0, "posterior": 0.0})
    figure = pictures.pair_figure(pair)
    heat = [ax for ax in figure.axes if ax.get_title() == "prior"][0].images[0]
    assert heat.get_clim() == (0.0, pytest.approx(0.3))
    assert any("maximum 0.30" in ax.get_ylabel() for ax in figure.axes)  # the colour bar says so
    forward, reverse = np.array([[0.9, 0.1], [0.1, 0.5]]), np.array([[0.6, 0.2], [0.3, 0.4]])
    both = pictures.directions_figure(["s0", "s1"], ["t0", "t1"], forward, reverse)
    images = [ax.images[0].get_array() for ax in both.axes if ax.images]
    np.testing.assert_allclose(images[0], forward.T)  # target words down the side
    np.testing.assert_allclose(images[1], reverse.T)
    assert any("0.90" in ax.get_ylabel() for ax in both.axes)


ATOOLS = Path(__file__).parent / "data" / "atools" / "links.txt"  # made by tests/data/atools/make.py


def _parse(field: str) -> set:
    return {tuple(map(int, link.split("-"))) for link in field.split()}


def test_hard_heuristics_equal_fast_align_atools_link_for_link():
    lines = ATOOLS.read_text().splitlines()
    assert len(lines) == 600
    differ = 0
    for line in lines:
        forward, reverse, *expected = map(_parse, line.split(" ||| "))
        for heuristic, want in zip(("intersect", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and"),
                                   expected):
            differ += sym.symmetrize(forward, reverse, heuristic) != want
    assert differ == 0


def _atools_on_grids(a: np.ndarray, b: np.ndarray, final: str | None) -> set:
    """A second implementation over boolean grids, written from atools' description: the result grid starts
    as a AND b; passes over the candidate cells (a OR b, not yet set), row-major, set a cell whose row or
    column is still empty and which touches a set cell (8-neighbourhood), until a pass sets nothing; then
    the final step over a's cells, then b's, row-major."""
    result = a & b
    while True:
        changed = False
        for i, j in zip(*np.nonzero((a | b) & ~result)):
            if result[i].any() and result[:, j].any():
                continue
            window = result[max(i - 1, 0): i + 2, max(j - 1, 0): j + 2]
            if window.any():
                result[i, j] = True
                changed = True
        if not changed:
            break
    for grid in (a, b) if final else ():
        for i, j in zip(*np.nonzero(grid)):
            row, column = result[i].any(), result[:, j].any()
            if not result[i, j] and ((not row and not column) if final == "and" else (not row or not column)):
                result[i, j] = True
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(result))}


def test_grow_heuristics_equal_a_grid_implementation_on_random_alignments():
    rng = np.random.default_rng(26)
    for _ in range(400):
        S, T = rng.integers(1, 12, size=2)
        a = rng.random((S, T)) < rng.uniform(0.05, 0.5)
        b = rng.random((S, T)) < rng.uniform(0.05, 0.5)
        forward = {(int(i), int(j)) for i, j in zip(*np.nonzero(a))}
        reverse = {(int(i), int(j)) for i, j in zip(*np.nonzero(b))}
        for heuristic, final in (("grow-diag", None), ("grow-diag-final", "or"), ("grow-diag-final-and", "and")):
            assert sym.symmetrize(forward, reverse, heuristic, S, T) == _atools_on_grids(a, b, final), heuristic


def test_links_outside_the_sentence_are_refused():
    with pytest.raises(ValueError, match="outside"):
        sym.symmetrize({(3, 0)}, {(0, 0)}, "grow-diag-final-and", 2, 2)

"""AER, precision and recall of a fixed file of model links against a gold file of sure and possible links,
checked against an independent computation from the definition (Och and Ney 2003) written here: 1-based
gold, empty alignments, links outside the sentence."""

from __future__ import annotations

import pytest

from varattn.analysis import aer
from varattn.data.text.pairs import read_pairs
from varattn.data.text.pharaoh import read_alignments
from varattn.errors import UserError

PAIRS = """das haus ist klein ||| the house is small
ja ||| yes
er geht nicht nach hause ||| he does not go home
ich ||| i
"""
# 1-based gold: "S" links written i-j, possible ones ipj (RWTH style); pair 4 has no gold links at all.
GOLD = """1-1 2-2 3-3 4-4
1p1
1-1 2p2 3-3 2-4 4p4 5-5 4p5

"""
# 0-based model links; pair 2 and pair 4 have none.
LINKS = """0-0 1-1 2-2 3-3 3-2
 
0-0 1-1 2-2 1-3 4-4 3-4 0-4

"""


def definition(links_text: str, gold_text: str, one_based: bool) -> tuple[float, float, float]:
    """Corpus AER / precision / recall straight from the definition, with its own parsing."""
    shift = 1 if one_based else 0
    a_total = s_total = a_and_s = a_and_p = 0
    for hyp_line, gold_line in zip(links_text.split("\n"), gold_text.split("\n")):
        A = {tuple(int(x) for x in item.split("-")) for item in hyp_line.split()}
        S, P = set(), set()
        for item in gold_line.split():
            possible = "p" in item
            i, j = (int(x) - shift for x in item.replace("p", "-").split("-"))
            (P if possible else S).add((i, j))
        P |= S
        a_total += len(A)
        s_total += len(S)
        a_and_s += len(A & S)
        a_and_p += len(A & P)
    return 1 - (a_and_s + a_and_p) / (a_total + s_total), a_and_p / a_total, a_and_s / s_total


def test_corpus_scores_match_the_definition(tmp_path):
    (tmp_path / "links.align").write_text(LINKS, encoding="utf-8")
    (tmp_path / "gold.align").write_text(GOLD, encoding="utf-8")
    hypotheses = read_alignments(tmp_path / "links.align")
    golds = aer.read_gold(tmp_path / "gold.align", one_based=True)
    assert len(hypotheses) == len(golds) == 4 and hypotheses[1] == set() and golds[3].possible == frozenset()
    found = aer.score(hypotheses, golds)
    expected = definition(LINKS, GOLD, one_based=True)
    assert (found.aer, found.precision, found.recall) == pytest.approx(expected)
    # and by hand for the record: |A| = 5 + 0 + 7 + 0 = 12, |S| = 4 + 0 + 4 + 0 = 8,
    # pair 3 (0-based) S = {0-0 2-2 1-3 4-4}, P = S + {1-1 3-3 3-4}:
    # |A∩S| = 4 + 0 + 4 = 8, |A∩P| = 4 + 0 + 6 (S's four, 1-1, 3-4) = 10
    assert (found.hypothesis, found.sure, found.hit_sure, found.hit_possible) == (12, 8, 8, 10)
    assert found.aer == pytest.approx(1 - 18 / 20)
    # pair by pair, the same definition
    for n, (hyp, gold) in enumerate(zip(LINKS.split("\n"), GOLD.split("\n"))):
        if hyp.strip() and gold.strip():
            one = aer.counts(hypotheses[n], golds[n])
            assert (one.aer, one.precision, one.recall) == pytest.approx(definition(hyp, gold, one_based=True))


def test_zero_based_reading_of_the_same_file_differs_and_is_checked(tmp_path):
    (tmp_path / "gold.align").write_text(GOLD, encoding="utf-8")
    zero = aer.read_gold(tmp_path / "gold.align")
    assert zero[0].sure == {(1, 1), (2, 2), (3, 3), (4, 4)}
    # read 0-based, pair 1's link 4-4 lies past its 4 words: a one-line error naming file and line
    (tmp_path / "pairs.txt").write_text(PAIRS, encoding="utf-8")
    src, tgt = read_pairs(tmp_path / "pairs.txt")
    with pytest.raises(UserError, match=r"gold\.align:1: gold link 4-4 \(0-based\) is outside the pair of 4 source "
                                        r"and 4 target words .*one_based") as error:
        for n, (s, t, g) in enumerate(zip(src, tgt, zero), 1):
            aer.check_bounds(g, len(s.split()), len(t.split()), f"{tmp_path / 'gold.align'}:{n}")
    assert "\n" not in str(error.value)
    ones = aer.read_gold(tmp_path / "gold.align", one_based=True)
    for n, (s, t, g) in enumerate(zip(src, tgt, ones), 1):
        aer.check_bounds(g, len(s.split()), len(t.split()), f"gold:{n}")  # all inside


def test_empty_alignments():
    nothing = aer.GoldLinks.of(())
    assert aer.score([set(), set()], [nothing, nothing]).as_dict()["aer"] == 0.0
    # no links against sure gold: recall 0, precision counts as perfect (no link is wrong), AER 1
    empty_hypothesis = aer.score([set()], [aer.parse_gold("0-0 1-1")])
    assert (empty_hypothesis.aer, empty_hypothesis.precision, empty_hypothesis.recall) == (1.0, 1.0, 0.0)
    # links against no gold at all: every link is wrong
    assert aer.score([{(0, 0)}], [nothing]).aer == 1.0
    # empty pairs add nothing to the corpus counts
    gold = aer.parse_gold("0-0 1p1")
    alone = aer.score([{(0, 0), (1, 1)}], [gold])
    padded = aer.score([set(), {(0, 0), (1, 1)}, set()], [nothing, gold, nothing])
    assert alone == padded
    with pytest.raises(UserError, match="2 aligned pairs but 1 gold lines"):
        aer.score([set(), set()], [nothing])

r"""Alignment error rate (Och and Ney, 2003) against gold links with *sure* and *possible* links.

With A the hypothesis links, S the sure gold links and P ⊇ S the possible ones (every sure link is
also possible):

.. math::
    \text{precision} = \frac{|A \cap P|}{|A|}, \qquad
    \text{recall} = \frac{|A \cap S|}{|S|}, \qquad
    \text{AER} = 1 - \frac{|A \cap S| + |A \cap P|}{|A| + |S|}.

Corpus scores sum the four counts over all sentences before dividing (the usual convention); a ratio
whose denominator is empty counts as perfect (1 for precision and recall, 0 for AER).

Gold files are Pharaoh lines: ``i-j`` is a sure link and ``ipj`` a possible one (source i, target j),
0-based unless ``one_based``. Models align BPE pieces; :func:`word_links` maps piece links to word
links — a word pair is linked when any of their pieces is — so that they can be scored against gold
word alignments.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from varattn.data.text.tokenize import BPE_SEPARATOR
from varattn.errors import UserError

__all__ = ["Counts", "GoldLinks", "check_bounds", "counts", "parse_gold", "read_gold", "score", "word_index",
           "word_links"]

Link = tuple[int, int]
_LINK = re.compile(r"^(\d+)([-pP])(\d+)$")


@dataclass(frozen=True)
class GoldLinks:
    """Gold links of one sentence pair: ``sure`` ⊆ ``possible`` (pairs (source i, target j), 0-based)."""

    sure: frozenset[Link]
    possible: frozenset[Link]

    @classmethod
    def of(cls, sure: Iterable[Link], possible: Iterable[Link] = ()) -> "GoldLinks":
        sure = frozenset(sure)
        return cls(sure, sure | frozenset(possible))


def parse_gold(line: str, *, one_based: bool = False, where: str = "gold") -> GoldLinks:
    """``"0-0 1p2"`` -> sure {(0, 0)}, possible {(0, 0), (1, 2)}; ``where`` prefixes error messages."""
    sure, possible = set(), set()
    shift = 1 if one_based else 0
    for item in line.split():
        match = _LINK.match(item)
        if match is None:
            raise UserError(f"{where}: bad alignment link {item!r} (expected i-j for sure or ipj for possible) "
                            "— fix the file")
        i, j = int(match.group(1)) - shift, int(match.group(3)) - shift
        if i < 0 or j < 0:
            raise UserError(f"{where}: link {item!r} has index 0 but the file is read as 1-based — "
                            "set one_based=False")
        (sure if match.group(2) == "-" else possible).add((i, j))
    return GoldLinks.of(sure, possible)


def read_gold(path: str | os.PathLike, *, one_based: bool = False) -> list[GoldLinks]:
    """Every line of a Pharaoh gold file (empty lines are pairs without links)."""
    from varattn.data.textio import read_lines

    return [parse_gold(line, one_based=one_based, where=f"{path}:{n}")
            for n, line in enumerate(read_lines(path, allow_empty=True), 1)]


@dataclass
class Counts:
    """The four AER counts (summable over sentences) and the scores they give."""

    hypothesis: int = 0  # |A|
    sure: int = 0  # |S|
    hit_sure: int = 0  # |A ∩ S|
    hit_possible: int = 0  # |A ∩ P|

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.hypothesis + other.hypothesis, self.sure + other.sure,
                      self.hit_sure + other.hit_sure, self.hit_possible + other.hit_possible)

    @property
    def precision(self) -> float:
        return self.hit_possible / self.hypothesis if self.hypothesis else 1.0

    @property
    def recall(self) -> float:
        return self.hit_sure / self.sure if self.sure else 1.0

    @property
    def aer(self) -> float:
        total = self.hypothesis + self.sure
        return 1.0 - (self.hit_sure + self.hit_possible) / total if total else 0.0

    def as_dict(self) -> dict:
        return {"aer": self.aer, "precision": self.precision, "recall": self.recall,
                "links": self.hypothesis, "sure": self.sure}


def counts(hypothesis: Iterable[Link], gold: GoldLinks) -> Counts:
    """The counts of one sentence pair."""
    links = set(hypothesis)
    return Counts(len(links), len(gold.sure), len(links & gold.sure), len(links & gold.possible))


def score(hypotheses: Iterable[Iterable[Link]], golds: Sequence[GoldLinks]) -> Counts:
    """Corpus counts over parallel lists of hypothesis link sets and gold links."""
    hypotheses = list(hypotheses)
    if len(hypotheses) != len(golds):
        raise UserError(f"{len(hypotheses)} aligned pairs but {len(golds)} gold lines — give the gold "
                        "alignments of exactly these sentence pairs")
    total = Counts()
    for hypothesis, gold in zip(hypotheses, golds):
        total = total + counts(hypothesis, gold)
    return total


def word_index(pieces: Sequence[str], separator: str = BPE_SEPARATOR) -> list[int]:
    """The word number of every BPE piece: ``["un@@", "believ@@", "able", "!"]`` -> ``[0, 0, 0, 1]``."""
    out, word = [], 0
    for piece in pieces:
        out.append(word)
        if not piece.endswith(separator):
            word += 1
    return out


def word_links(links: Iterable[Link], src_pieces: Sequence[str], tgt_pieces: Sequence[str]) -> set[Link]:
    """Piece links (i, j) -> word links: a pair of words is linked when any of their pieces is."""
    src_word, tgt_word = word_index(src_pieces), word_index(tgt_pieces)
    return {(src_word[i], tgt_word[j]) for i, j in links}


def check_bounds(gold: GoldLinks, src_words: int, tgt_words: int, where: str) -> None:
    """A UserError when a gold link points past the sentence (``where`` names the file and line)."""
    for i, j in sorted(gold.possible):
        if i >= src_words or j >= tgt_words:
            raise UserError(f"{where}: gold link {i}-{j} (0-based) is outside the pair of {src_words} source and "
                            f"{tgt_words} target words — check the file's line order and one_based")

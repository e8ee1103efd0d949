r"""Symmetrisation of two directional word alignments (Koehn, Och and Marcu 2003; Koehn et al. 2005).

A model trained source -> target links every target word to source words (an asymmetric alignment,
"forward"); one trained target -> source does the reverse. With both expressed as sets of links
(source word i, target word j) — the reverse direction's links transposed — the heuristics are:

- ``intersect``: F ∩ R (high precision);
- ``union``: F ∪ R (high recall);
- ``grow-diag``: start from F ∩ R; the candidates are the other links of F ∪ R, in the order i = 0..,
  j = 0..; pass over them, adding a candidate when its source word *or* its target word is still
  unaligned and one of its 8 neighbours (i ± 1, j ± 1 and the diagonals) is already in the alignment
  (links added earlier in the same pass count); repeat passes over the candidates left until a pass adds
  nothing;
- ``grow-diag-final``: then, for F and then R, each link in the order i = 0.., j = 0.., add it when its
  source word *or* its target word is still unaligned;
- ``grow-diag-final-and``: the same final step, but only when the source word *and* the target word are
  both unaligned.

This is the loop of ``atools -c grow-diag-final-and`` (fast_align's tool, the reference most aligners'
published numbers use), which tests/test_symmetrize.py checks link for link against atools' own output.
Moses' ``symal`` instead walks the alignment's points and their neighbours; the two can differ in a few
links where a candidate is reachable from two directions.

Soft symmetrisation combines the two directions' posterior matrices over words, ``[S, T]`` each
(cell (i, j): the forward model's p(source i | target j) and the reverse model's p(target j | source i)):
``soft-product`` multiplies them, ``soft-mean`` averages them, and a link is kept where the combined
value is at least a threshold.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

Link = tuple[int, int]

HARD = ("intersect", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and")
SOFT = ("soft-product", "soft-mean")
HEURISTICS = HARD + SOFT

_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))


def transpose(links: Iterable[Link]) -> set[Link]:
    """Links of the reverse direction (its source i = our target) -> our (source, target) order."""
    return {(j, i) for i, j in links}


def _aligned(alignment: set[Link]) -> tuple[set[int], set[int]]:
    return {i for i, _ in alignment}, {j for _, j in alignment}


def _grow_diag(forward: set[Link], reverse: set[Link]) -> set[Link]:
    alignment = forward & reverse
    src_aligned, tgt_aligned = _aligned(alignment)
    candidates = sorted((forward | reverse) - alignment)
    while candidates:
        left = []
        for i, j in candidates:
            if (i not in src_aligned or j not in tgt_aligned) and any(
                    (i + di, j + dj) in alignment for di, dj in _NEIGHBOURS):
                alignment.add((i, j))
                src_aligned.add(i)
                tgt_aligned.add(j)
            else:
                left.append((i, j))
        if len(left) == len(candidates):
            break
        candidates = left
    return alignment


def _final(alignment: set[Link], direction: set[Link], both: bool) -> None:
    src_aligned, tgt_aligned = _aligned(alignment)
    for i, j in sorted(direction - alignment):
        free_src, free_tgt = i not in src_aligned, j not in tgt_aligned
        if (free_src and free_tgt) if both else (free_src or free_tgt):
            alignment.add((i, j))
            src_aligned.add(i)
            tgt_aligned.add(j)


def symmetrize(forward: Iterable[Link], reverse: Iterable[Link], heuristic: str, src_len: int | None = None,
               tgt_len: int | None = None) -> set[Link]:
    """One of :data:`HARD` on two link sets over (source word i, target word j), both in that order.

    ``src_len``/``tgt_len``: the sentence lengths in words, when known: a link outside them is a
    ValueError (the heuristics themselves only visit linked cells).
    """
    forward, reverse = set(forward), set(reverse)
    if heuristic not in HARD:
        raise ValueError(f"unknown heuristic {heuristic!r}; choose one of {', '.join(HARD)}")
    for i, j in forward | reverse:
        if i < 0 or j < 0 or (src_len is not None and i >= src_len) or (tgt_len is not None and j >= tgt_len):
            raise ValueError(f"link {i}-{j} lies outside a sentence pair of {src_len} x {tgt_len} words")
    if heuristic == "intersect":
        return forward & reverse
    if heuristic == "union":
        return forward | reverse
    alignment = _grow_diag(forward, reverse)
    if heuristic != "grow-diag":
        both = heuristic == "grow-diag-final-and"
        _final(alignment, forward, both)
        _final(alignment, reverse, both)
    return alignment


def combine(forward: np.ndarray, reverse: np.ndarray, how: str) -> np.ndarray:
    """Two [S, T] word posterior matrices (cell (i, j) for source i, target j) -> one [S, T]:
    ``soft-product`` (elementwise product) or ``soft-mean`` (their average)."""
    if forward.shape != reverse.shape:
        raise ValueError(f"matrices of shapes {forward.shape} and {reverse.shape} cannot be combined")
    if how == "soft-product":
        return forward * reverse
    if how == "soft-mean":
        return (forward + reverse) / 2.0
    raise ValueError(f"unknown soft symmetrisation {how!r}; choose one of {', '.join(SOFT)}")


def soft_links(combined: np.ndarray, threshold: float) -> set[Link]:
    """Every cell (i, j) of an [S, T] matrix whose value is at least ``threshold``."""
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(combined >= threshold))}

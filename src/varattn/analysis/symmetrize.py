r"""Symmetrisation of two directional word alignments (Koehn, Och and Marcu 2003; Koehn et al. 2005).

A model trained source -> target links every target word to source words (an asymmetric alignment,
"forward"); one trained target -> source does the reverse. With both expressed as sets of links
(source word i, target word j) — the reverse direction's links transposed — the heuristics are:

- ``intersect``: F ∩ R (high precision);
- ``union``: F ∪ R (high recall);
- ``grow-diag``: start from F ∩ R; repeat until nothing changes: for every link (i, j) of the current
  alignment, in the order i = 0.., j = 0.., and for each of its 8 neighbours (i ± 1, j ± 1 and the
  diagonals), add the neighbour when it is in F ∪ R and its source word *or* its target word is still
  unaligned;
- ``grow-diag-final``: then, for F and then R, add every link (in order) whose source word *or* target
  word is still unaligned;
- ``grow-diag-final-and``: the same final step, but only when the source word *and* the target word are
  both unaligned.

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

_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def transpose(links: Iterable[Link]) -> set[Link]:
    """Links of the reverse direction (its source i = our target) -> our (source, target) order."""
    return {(j, i) for i, j in links}


def _grow_diag(forward: set[Link], reverse: set[Link], src_len: int, tgt_len: int) -> set[Link]:
    union = forward | reverse
    alignment = forward & reverse
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    added = True
    while added:
        added = False
        for i in range(src_len):
            for j in range(tgt_len):
                if (i, j) not in alignment:
                    continue
                for di, dj in _NEIGHBOURS:
                    new = (i + di, j + dj)
                    if new in union and new not in alignment and (
                            new[0] not in src_aligned or new[1] not in tgt_aligned):
                        alignment.add(new)
                        src_aligned.add(new[0])
                        tgt_aligned.add(new[1])
                        added = True
    return alignment


def _final(alignment: set[Link], direction: set[Link], both: bool) -> None:
    src_aligned = {i for i, _ in alignment}
    tgt_aligned = {j for _, j in alignment}
    for i, j in sorted(direction):
        free_src, free_tgt = i not in src_aligned, j not in tgt_aligned
        if (free_src and free_tgt) if both else (free_src or free_tgt):
            alignment.add((i, j))
            src_aligned.add(i)
            tgt_aligned.add(j)


def symmetrize(forward: Iterable[Link], reverse: Iterable[Link], heuristic: str, src_len: int | None = None,
               tgt_len: int | None = None) -> set[Link]:
    """One of :data:`HARD` on two link sets over (source word i, target word j), both in that order.

    ``src_len``/``tgt_len``: the sentence lengths in words (default: one past the largest index linked).
    """
    forward, reverse = set(forward), set(reverse)
    if heuristic not in HARD:
        raise ValueError(f"unknown heuristic {heuristic!r}; choose one of {', '.join(HARD)}")
    if heuristic == "intersect":
        return forward & reverse
    if heuristic == "union":
        return forward | reverse
    everything = forward | reverse
    src_len = src_len if src_len is not None else 1 + max((i for i, _ in everything), default=-1)
    tgt_len = tgt_len if tgt_len is not None else 1 + max((j for _, j in everything), default=-1)
    alignment = _grow_diag(forward, reverse, src_len, tgt_len)
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

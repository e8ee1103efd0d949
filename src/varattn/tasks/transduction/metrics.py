"""The scores of grapheme-to-phoneme conversion as the SIGMORPHON shared tasks compute them.

- ``wer``: the percentage of words whose output symbol sequence is not exactly the reference's.
- ``per``: symbol edit distance (Levenshtein: insertions, deletions, substitutions, each costing 1) summed
  over the words, divided by the summed reference lengths, in percent.
- :func:`macro`: the unweighted mean of a score over languages.
"""

from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["edit_distance", "wer", "per", "macro"]


def edit_distance(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance between two symbol sequences (unit costs)."""
    previous = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, start=1):
        current = [i]
        for j, r in enumerate(reference, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def _check(hypotheses: Sequence, references: Sequence) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    if not references:
        raise ValueError("no words to score")


def wer(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Word error rate in percent over parallel symbol sequences."""
    _check(hypotheses, references)
    wrong = sum(list(h) != list(r) for h, r in zip(hypotheses, references))
    return 100.0 * wrong / len(references)


def per(hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Phone (symbol) error rate in percent: summed edit distances over summed reference lengths."""
    _check(hypotheses, references)
    total = sum(len(r) for r in references)
    if total == 0:
        raise ValueError("the references hold no symbols")
    return 100.0 * sum(edit_distance(h, r) for h, r in zip(hypotheses, references)) / total


def macro(scores: Mapping[str, float]) -> float:
    """The unweighted mean over languages of ``scores`` (language -> score)."""
    if not scores:
        raise ValueError("no languages to average")
    return sum(scores.values()) / len(scores)

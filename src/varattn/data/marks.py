"""Trailing marks of phone symbols as tokens of their own, and back (``--split-marks``).

A phone symbol such as ``ǎː`` (a, rising tone, long) is one token by default, unrelated to ``a``, ``aː``
or ``âː``. Split, it is the tokens ``a``, ``◌̌``, ``ː``: the base, then each *trailing mark* — a Unicode
combining character (after canonical decomposition) or a length mark (``ː``, ``ˑ``) that follows the
symbol's last base character. A mark inside a symbol (the tie of ``t͡s``) stays where it is.

Joining attaches every one-character mark token to the symbol before it and recomposes (NFC), so
``join(split(symbols)) == NFC(symbols)`` whenever no symbol is marks alone (:func:`marks_only` finds
those: a lexicon with one cannot be split, since its mark would join the symbol before it).
"""

from __future__ import annotations

import unicodedata
from typing import Iterable, Sequence

__all__ = ["LENGTH_MARKS", "is_mark", "marks_only", "split_marks", "join_marks", "mark_token"]

LENGTH_MARKS = frozenset("ːˑ")


def is_mark(character: str) -> bool:
    """A combining character or a length mark."""
    return unicodedata.combining(character) != 0 or character in LENGTH_MARKS


def mark_token(token: str) -> bool:
    """A token that continues the symbol before it: exactly one mark."""
    return len(token) == 1 and is_mark(token)


def marks_only(symbol: str) -> bool:
    return all(is_mark(c) for c in unicodedata.normalize("NFD", symbol))


def split_marks(symbols: Iterable[str]) -> list[str]:
    """Symbols -> tokens: each symbol's base (NFC), then its trailing marks one token each."""
    tokens = []
    for symbol in symbols:
        decomposed = unicodedata.normalize("NFD", symbol)
        end = len(decomposed)
        while end > 0 and is_mark(decomposed[end - 1]):
            end -= 1
        if end == 0:
            tokens.append(symbol)
            continue
        tokens.append(unicodedata.normalize("NFC", decomposed[:end]))
        tokens.extend(decomposed[end:])
    return tokens


def join_marks(tokens: Sequence[str]) -> list[str]:
    """Tokens -> symbols: each mark token attached to the symbol before it (one at the start stands
    alone), every symbol recomposed (NFC)."""
    symbols: list[str] = []
    for token in tokens:
        if symbols and mark_token(token):
            symbols[-1] += token
        else:
            symbols.append(token)
    return [unicodedata.normalize("NFC", s) for s in symbols]

"""The one-pair-a-line text format of fast_align, eflomal and awesome-align: ``source ||| target``.

Each line holds a source sentence, the separator `` ||| `` (space, three bars, space) and the target
sentence. Tokens are separated by spaces; word alignments of the pair index those tokens (0-based), so a
file that is already tokenised is read as it is, token for token. Every malformed line is a one-line
:class:`~varattn.errors.UserError` naming the file, the line and the fix.
"""

from __future__ import annotations

import os

from varattn.errors import UserError

__all__ = ["SEPARATOR", "parse_pair", "read_pairs", "format_pair"]

SEPARATOR = " ||| "


def parse_pair(line: str, where: str) -> tuple[str, str]:
    """``"das haus ||| the house"`` -> ``("das haus", "the house")`` (whitespace normalised); ``where`` is
    ``path:line`` for the error message."""
    if SEPARATOR not in line:
        if "|||" in line:
            raise UserError(f"{where}: '|||' needs a space on each side (source ||| target) — write ' ||| ' "
                            "between the sentences")
        raise UserError(f"{where}: no ' ||| ' between source and target — write each pair as "
                        "'source ||| target' on one line")
    source, target = line.split(SEPARATOR, 1)
    if SEPARATOR.strip() in target.split():
        raise UserError(f"{where}: more than one ' ||| ' — write one pair per line, 'source ||| target'")
    source, target = " ".join(source.split()), " ".join(target.split())
    for side, text in (("source", source), ("target", target)):
        if not text:
            raise UserError(f"{where}: the {side} side is empty — give both sentences, or remove the line")
    return source, target


def read_pairs(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """All pairs of a ``source ||| target`` file (plain or .gz, UTF-8): parallel source and target lines.

    An empty line, a line without the separator and a line with an empty side are errors (an aligner
    cannot skip a pair without shifting every later line against its gold links).
    """
    from varattn.data.textio import read_lines

    sources, targets = [], []
    for n, line in enumerate(read_lines(path, allow_empty=True), 1):
        if not line.strip():
            raise UserError(f"{path}:{n}: empty line — every line must be a pair 'source ||| target'; remove it")
        source, target = parse_pair(line, f"{path}:{n}")
        sources.append(source)
        targets.append(target)
    if not sources:
        raise UserError(f"{path}: no sentence pairs — give a file with one 'source ||| target' per line")
    return sources, targets


def format_pair(source: str, target: str) -> str:
    """The inverse of :func:`parse_pair`: one line ``source ||| target``."""
    return f"{source}{SEPARATOR}{target}"

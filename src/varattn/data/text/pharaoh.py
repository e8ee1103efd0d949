"""Word alignments in Pharaoh format: one line per sentence pair, links ``i-j`` (source i, target j,
0-based) separated by spaces; an empty line is a pair without links."""

from __future__ import annotations

import os
from typing import Iterable

from varattn.errors import UserError

__all__ = ["format_links", "parse_links", "read_alignments"]


def format_links(links: Iterable[tuple[int, int]]) -> str:
    """``[(0, 1), (2, 0)]`` -> ``"0-1 2-0"`` (sorted)."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links))


def parse_links(line: str, *, where: str = "alignment") -> set[tuple[int, int]]:
    """``"0-1 2-0"`` -> ``{(0, 1), (2, 0)}``; ``where`` (``path:line``) prefixes the error message.

    Sure/possible marks (``0p1``) are not supported; a malformed link is a UserError.
    """
    out = set()
    for item in line.split():
        i, sep, j = item.partition("-")
        if not (sep and i.isdigit() and j.isdigit()):
            raise UserError(
                f"{where}: bad alignment link {item!r} (expected i-j) — fix or regenerate the file"
            )
        out.add((int(i), int(j)))
    return out


def read_alignments(path: str | os.PathLike) -> list[set[tuple[int, int]]]:
    """All lines of a Pharaoh file as sets of links."""
    from varattn.data.textio import read_lines

    return [
        parse_links(ln, where=f"{path}:{n}") for n, ln in enumerate(read_lines(path, allow_empty=True), 1)
    ]

"""Token vocabularies: strings <-> integer ids, with four fixed specials.

Ids 0-3 are always ``<pad>`` (PAD), ``<unk>`` (UNK), ``<s>`` (BOS), ``</s>`` (EOS); the rest follow by
descending training count, ties broken by the token string, so a vocabulary is a pure function of its
counts. Stored as JSON: ``{"format": "varattn-vocab", "version": 1, "tokens": [...], "counts": [...]}``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from varattn.errors import UserError

__all__ = ["PAD", "UNK", "BOS", "EOS", "SPECIALS", "Vocabulary"]

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
_FORMAT = "varattn-vocab"


class Vocabulary:
    """A bijection between token strings and ids ``0 .. len-1``; unknown strings map to UNK.

    Args:
        tokens: every token in id order, starting with the four :data:`SPECIALS`.
        counts: optional training counts, parallel to ``tokens`` (0 for the specials).
    """

    def __init__(self, tokens: Sequence[str], counts: Sequence[int] | None = None) -> None:
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.itos: list[str] = tokens
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.counts: list[int] = list(counts) if counts is not None else [0] * len(tokens)

    @classmethod
    def build(
        cls,
        counts: Mapping[str, int] | Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> "Vocabulary":
        """Vocabulary of the tokens seen at least ``min_freq`` times, most frequent first.

        Args:
            counts: a token -> count mapping, or sentences (sequences of tokens) to count.
            min_freq: the least count a token needs to get its own id.
            max_size: the most tokens kept *besides* the four specials (None: no limit).
        """
        if not isinstance(counts, Mapping):
            c: Counter = Counter()
            for sent in counts:
                c.update(sent)
            counts = c
        items = [(t, n) for t, n in counts.items() if n >= min_freq and t not in SPECIALS]
        items.sort(key=lambda tn: (-tn[1], tn[0]))
        if max_size is not None:
            items = items[: max(0, max_size)]
        return cls(list(SPECIALS) + [t for t, _ in items], [0] * 4 + [n for _, n in items])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    def index(self, token: str) -> int:
        """Id of ``token`` (UNK when unknown)."""
        return self.stoi.get(token, UNK)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Token strings -> ids (UNK for unknown tokens); no BOS/EOS added."""
        get = self.stoi.get
        return [get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """Ids -> token strings.

        With ``strip_specials`` the sequence ends at the first EOS, and PAD and BOS are dropped (UNK stays
        as ``<unk>``); without it every id is rendered.
        """
        out = []
        for i in ids:
            i = int(i)
            if strip_specials:
                if i == EOS:
                    break
                if i in (PAD, BOS):
                    continue
            out.append(self.itos[i])
        return out

    # --- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": _FORMAT, "version": 1, "tokens": self.itos, "counts": self.counts}

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON (atomically)."""
        from varattn.data.textio import atomic_write_bytes

        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=0)
        atomic_write_bytes(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        """Read a vocabulary saved by :meth:`save`; a missing, corrupt or foreign file is a UserError."""
        p = Path(path)
        fix = "prepare the data again (varattn prepare)"
        if not p.is_file():
            raise UserError(f"{p}: vocabulary file not found — {fix}")
        try:
            d = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"{p}: vocabulary file is not UTF-8 — {fix}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{p}:{e.lineno}: invalid JSON in vocabulary ({e.msg}) — {fix}") from None
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise UserError(f"{p}: not a varattn vocabulary file — {fix}")
        if d.get("version") != 1:
            raise UserError(f"{p}: vocabulary version {d.get('version')!r} is not supported — {fix}")
        tokens = d.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise UserError(f"{p}: 'tokens' must be a list of strings — {fix}")
        if tuple(tokens[:4]) != SPECIALS:
            raise UserError(f"{p}: the first tokens must be {list(SPECIALS)} — {fix}")
        if len(set(tokens)) != len(tokens):
            raise UserError(f"{p}: duplicate tokens — {fix}")
        counts = d.get("counts")
        if counts is not None and (
            not isinstance(counts, list)
            or len(counts) != len(tokens)
            or not all(isinstance(n, int) for n in counts)
        ):
            raise UserError(f"{p}: 'counts' must be one integer per token — {fix}")
        return cls(tokens, counts)

"""Moses tokenisation (sacremoses), lowercasing, joint BPE (subword-nmt) and the inverse steps.

A :class:`Pipeline` records how raw text becomes the model's tokens, so that ``varattn translate`` can
treat a user's raw sentence exactly as the training data was treated, and turn output tokens back into
text. Prepared folders store it in ``meta.json`` (``Pipeline.to_dict``) next to ``bpe.codes``.

Token strings are whitespace-separated; BPE continuation is marked by ``@@`` at the end of a non-final
piece (``"un@@ believ@@ able"``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from varattn.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "BPE_SEPARATOR",
    "normalize",
    "is_escaped",
    "moses_escape",
    "moses_unescape",
    "moses_tokenize",
    "moses_detokenize",
    "learn_bpe",
    "load_bpe",
    "remove_bpe",
    "Pipeline",
]

BPE_SEPARATOR = "@@"
_BPE_RE = re.compile(r"(@@ )|(@@ ?$)")


@lru_cache(maxsize=None)
def _moses_tokenizer(lang: str):
    from sacremoses import MosesTokenizer

    return MosesTokenizer(lang=lang)


@lru_cache(maxsize=None)
def _moses_detokenizer(lang: str):
    from sacremoses import MosesDetokenizer

    return MosesDetokenizer(lang=lang)


def normalize(text: str) -> tuple[str, int]:
    """Unicode NFC, then every format character (category Cf: zero-width spaces and joiners, byte-order
    marks, bidirectional marks, soft hyphens) removed. Returns the text and how many characters were
    removed; such characters are invisible, so they must never become tokens or keep a line non-empty."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return kept, len(text) - len(kept)


_ENTITY = re.compile(r"&(?:amp|lt|gt|apos|quot|#124|#91|#93);")


def is_escaped(text: str) -> bool:
    """True when ``text`` holds one of the entities Moses' escaping writes (``&apos;``, ``&amp;``, ...)."""
    return _ENTITY.search(text) is not None


def moses_unescape(text: str) -> str:
    """Undo one level of Moses escaping (``&apos;s`` -> ``'s``, ``&amp;apos;`` -> ``&apos;``)."""
    from sacremoses.util import xml_unescape

    return xml_unescape(text) if is_escaped(text) else text


def moses_escape(text: str) -> str:
    """Moses escaping of ``& < > ' " | [ ]`` (``'s`` -> ``&apos;s``); text already escaped is unescaped
    first, so it is never escaped twice."""
    from sacremoses.util import xml_escape

    return xml_escape(moses_unescape(text))


def match_escaping(token: str, escape: bool) -> str:
    """One token (or line) in a model's convention: escaped when ``escape``, plain otherwise, whichever
    convention it came in."""
    return moses_escape(token) if escape else moses_unescape(token)


def moses_tokenize(line: str, lang: str, *, escape: bool = False) -> str:
    """Moses-tokenise one line (sacremoses, no aggressive dash splitting); returns space-joined tokens.

    ``escape=True`` writes ``&apos;``, ``&quot;``, ``&amp;`` … as Moses' ``tokenizer.perl`` does by
    default (the convention of the Multi30k and IWSLT'14 reference files); the default is off (``-no-escape``,
    as fairseq and most recipes). Input that is already escaped is recognised and unescaped first, so
    ``&apos;`` is neither escaped twice nor split into ``& apos ;``.
    """
    return _moses_tokenizer(lang).tokenize(moses_unescape(line), aggressive_dash_splits=False, return_str=True,
                                           escape=escape)


def moses_detokenize(tokens: Sequence[str], lang: str) -> str:
    """Join Moses tokens into text (sacremoses detokeniser; HTML entities such as ``&apos;`` unescaped)."""
    return _moses_detokenizer(lang).detokenize(list(tokens), return_str=True, unescape=True)


def remove_bpe(text: str) -> str:
    """Undo BPE segmentation: ``"un@@ believ@@ able"`` -> ``"unbelievable"``."""
    return _BPE_RE.sub("", text)


def learn_bpe(lines: Iterable[str], codes_path: str | os.PathLike, merges: int, progress: bool = False) -> int:
    """Learn ``merges`` joint BPE merge operations from token lines and write them to ``codes_path``.

    ``lines`` are whitespace-tokenised sentences (train source and target together for joint BPE).
    Uses ``subword_nmt.learn_bpe.learn_bpe`` (min frequency 2; it stops early when no pair occurs twice).
    Returns the number of merges written. subword-nmt's own messages go to the logger, not the terminal;
    with ``progress`` its progress bar over the merges is shown (learning takes minutes on a real corpus).
    """
    from subword_nmt.learn_bpe import learn_bpe as _learn

    if merges <= 0:
        raise ValueError("merges must be positive")
    out = io.StringIO()
    noise = io.StringIO()
    with contextlib.nullcontext() if progress else contextlib.redirect_stderr(noise):
        _learn((ln + "\n" for ln in lines), out, merges)
    for msg in noise.getvalue().splitlines():
        if msg.strip() and "it/s]" not in msg:
            log.info("subword-nmt: %s", msg.strip())
    text = out.getvalue()
    Path(codes_path).write_text(text, encoding="utf-8")
    return max(0, text.count("\n") - 1)


def load_bpe(codes_path: str | os.PathLike):
    """A ``subword_nmt.apply_bpe.BPE`` for a codes file, after checking the file (subword-nmt itself
    would exit the process on a malformed line)."""
    from subword_nmt.apply_bpe import BPE

    p = Path(codes_path)
    if not p.is_file():
        raise UserError(
            f"{p}: BPE codes file not found — copy bpe.codes from the prepared data folder beside meta.json"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{p}: cannot read BPE codes ({e}) — prepare the data again") from None
    for n, line in enumerate(text.rstrip("\n").split("\n"), start=1):
        if n == 1 and line.startswith("#version:"):
            continue
        if line and len(line.strip("\r\n ").split(" ")) != 2:
            raise UserError(
                f"{p}:{n}: not a BPE merge (need two symbols separated by a space) — prepare the data again"
            )
    return BPE(io.StringIO(text), separator=BPE_SEPARATOR)


@dataclass
class Pipeline:
    """How raw text becomes model tokens: Moses tokenisation, lowercasing, then joint BPE.

    Attributes:
        src_lang, tgt_lang: language codes for the Moses rules (``"de"``, ``"en"``; anything else gets
            the generic rules).
        tokenize: apply the Moses tokeniser.
        lowercase: lowercase after tokenising.
        bpe_codes: path of the subword-nmt codes file, or None for no BPE.
        escape: Moses HTML escaping (``'`` -> ``&apos;``); off by default, on only where a corpus's own
            tokenised files are escaped (Multi30k, IWSLT'14 as fairseq prepares it) so raw input matches
            them. Recorded in ``meta.json``; folders written before the key existed read as off.
    """

    src_lang: str = "src"
    tgt_lang: str = "tgt"
    tokenize: bool = False
    lowercase: bool = False
    bpe_codes: Path | None = None
    escape: bool = False
    _bpe: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.bpe_codes is not None:
            self.bpe_codes = Path(self.bpe_codes)

    # --- the stages -------------------------------------------------------------------------------

    def pretokenize(self, line: str, side: str) -> str:
        """Tokenise and lowercase one raw line of ``side`` ("src" or "tgt"); Unicode and whitespace
        normalised (:func:`normalize`)."""
        lang = self.src_lang if side == "src" else self.tgt_lang
        line = normalize(line)[0]
        if self.tokenize:
            line = moses_tokenize(line, lang, escape=self.escape)
        if self.lowercase:
            line = line.lower()
        return " ".join(line.split())

    def apply_bpe(self, tokens: str) -> str:
        """BPE-segment a whitespace-tokenised line (identity without codes)."""
        if self.bpe_codes is None:
            return tokens
        if self._bpe is None:
            self._bpe = load_bpe(self.bpe_codes)
        return self._bpe.segment(tokens) if tokens.strip() else ""

    # --- whole directions ------------------------------------------------------------------------

    def encode_source(self, line: str) -> list[str]:
        """Raw source sentence -> model tokens."""
        return self.apply_bpe(self.pretokenize(line, "src")).split()

    def encode_target(self, line: str) -> list[str]:
        """Raw target sentence -> model tokens."""
        return self.apply_bpe(self.pretokenize(line, "tgt")).split()

    def encode_words(self, words: Sequence[str]) -> list[list[str]]:
        """Words tokenised already (by the user, or by :meth:`pretokenize`) -> the model's pieces of each
        word, one list per word: no tokenisation, each word brought to this pipeline's escaping (without
        escaping twice), lowercased as the pipeline does, then BPE-segmented. Word k of the input is
        exactly the pieces of list k, so links over pieces map back onto the given words."""
        out = []
        for word in words:
            word = match_escaping(normalize(word)[0], self.escape)
            if self.lowercase:
                word = word.lower()
            out.append(self.apply_bpe(word).split() or [word])
        return out

    def encode_pretokenized(self, line: str) -> list[str]:
        """A line tokenised already (words split on spaces) -> model tokens, by :meth:`encode_words`."""
        return [piece for pieces in self.encode_words(line.split()) for piece in pieces]

    def decode_target(self, tokens: Sequence[str], detokenize: bool = False) -> str:
        """Model target tokens -> text: BPE removed, then Moses-detokenised when ``detokenize`` (and
        the pipeline tokenised). Without detokenisation the result is comparable to ``.ref.tgt``."""
        text = remove_bpe(" ".join(tokens)).strip()
        if detokenize and self.tokenize:
            return moses_detokenize(text.split(), self.tgt_lang)
        return text

    # --- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-ready settings; ``bpe_codes`` is stored by file name (relative to the folder)."""
        return {
            "src_lang": self.src_lang,
            "tgt_lang": self.tgt_lang,
            "tokenize": bool(self.tokenize),
            "lowercase": bool(self.lowercase),
            "escape": bool(self.escape),
            "bpe_codes": None if self.bpe_codes is None else self.bpe_codes.name,
        }

    @classmethod
    def from_dict(cls, d: dict, base_dir: str | os.PathLike) -> "Pipeline":
        """Inverse of :meth:`to_dict`; ``bpe_codes`` is resolved inside ``base_dir`` and must exist."""
        base = Path(base_dir)
        if not isinstance(d, dict):
            raise UserError(f"{base / 'meta.json'}: 'pipeline' is not an object — prepare the data again")
        known = {"src_lang", "tgt_lang", "tokenize", "lowercase", "escape", "bpe_codes"}
        unknown = set(d) - known
        if unknown:
            raise UserError(
                f"{base / 'meta.json'}: unknown pipeline keys {sorted(unknown)} — prepare the data again "
                f"with this version of varattn"
            )
        codes = d.get("bpe_codes")
        if codes is not None:
            codes = base / codes
            if not codes.is_file():
                raise UserError(
                    f"{codes}: BPE codes file missing — copy bpe.codes from the prepared data folder"
                )
        return cls(
            src_lang=str(d.get("src_lang", "src")),
            tgt_lang=str(d.get("tgt_lang", "tgt")),
            tokenize=bool(d.get("tokenize", False)),
            lowercase=bool(d.get("lowercase", False)),
            bpe_codes=codes,
            escape=bool(d.get("escape", False)),
        )

"""Lexicons (``word<TAB>symbols``) as prepared data folders for character-to-symbol transduction (G2P).

Tokens: the source side is the word's Unicode characters after normalisation (NFC by default), a space
inside a word (Vietnamese syllables, multi-word entries) written as :data:`SPACE`; the target side is
the given space-separated symbols (phones), as they are. No Moses tokenisation, no BPE. The folder has
the layout of a translation folder (:mod:`varattn.data.text.build`) with ``"task": "transduction"`` and
a ``"transduction"`` record (which side is characters, the normalisation) in ``meta.json``; its
pipeline (:class:`CharacterPipeline`) turns a raw word into the model's tokens for ``translate``,
``align`` and the Python API.

Recipes (registered in :mod:`varattn.data.corpora.recipes`):

- ``sigmorphon-g2p``: ``from_dir`` holding the SIGMORPHON 2021 task 1 files ``{lang}_{train,dev,test}.tsv``
  (directly or under ``medium/``, ``high/``, ``low/``); dev becomes ``valid``.
- ``lexicon``: a user's own ``train``, ``valid`` and optional ``test`` files.

Every line must be ``word<TAB>symbols`` with both sides non-empty; a bad line stops preparation with one
line naming the file, the line and the fix.

``split_marks``: each symbol's trailing marks (tone, length, nasality: :mod:`varattn.data.marks`) become
tokens of their own on the target side (``ǎː`` -> ``a ◌̌ ː``); outputs are joined back into symbols, and
WER and PER are computed over the joined symbols.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from varattn.data.marks import join_marks, mark_token, marks_only, split_marks as split_symbol_marks
from varattn.data.text.build import BuildOptions, TextSplit, build_prepared
from varattn.data.text.prepared import PreparedData, load_prepared
from varattn.data.text.tokenize import Pipeline
from varattn.data.textio import read_lines
from varattn.errors import UserError

__all__ = ["SPACE", "NORMALIZATIONS", "CharacterPipeline", "read_lexicon", "prepare_lexicon",
           "prepare_sigmorphon", "load_transduction", "sigmorphon_files"]

SPACE = "\u2581"  # "▁": a space inside a word, as one source token
NORMALIZATIONS = ("nfc", "nfd", "nfkc", "nfkd", "none")
SIGMORPHON_SPLITS = {"train": "train", "valid": "dev", "test": "test"}


def check_normalization(name: str) -> str:
    """``name`` lowercased if it is one of :data:`NORMALIZATIONS`; a UserError otherwise."""
    key = str(name).lower()
    if key not in NORMALIZATIONS:
        raise UserError(f"normalization={name!r}: unknown Unicode normalisation — use one of "
                        f"{', '.join(NORMALIZATIONS)} (default nfc)")
    return key


def characters(word: str, normalization: str = "nfc", lowercase: bool = False) -> list[str]:
    """A word -> its character tokens: normalised, optionally lowercased, runs of whitespace inside it
    written as one :data:`SPACE`, outer whitespace dropped."""
    if normalization != "none":
        word = unicodedata.normalize(normalization.upper(), word)
    if lowercase:
        word = word.lower()
    return list(SPACE.join(word.split()))


@dataclass
class CharacterPipeline(Pipeline):
    """The pipeline of a transduction folder: characters on ``char_side`` ("src", or "tgt" when the
    folder is read reversed), space-separated symbols on the other side; no tokeniser, no BPE."""

    normalization: str = "nfc"
    char_side: str = "src"
    split_marks: bool = False

    def pretokenize(self, line: str, side: str) -> str:
        """One raw line of ``side`` -> its tokens joined by spaces (symbols with their trailing marks
        split off when the folder was prepared so)."""
        if side == self.char_side:
            return " ".join(characters(line, self.normalization, self.lowercase))
        symbols = line.split()
        return " ".join(split_symbol_marks(symbols) if self.split_marks else symbols)

    def decode_target(self, tokens, detokenize: bool = False) -> str:
        """Model target tokens -> text: the symbols, marks joined back onto them where they were split."""
        if self.split_marks and self.char_side == "src":
            return " ".join(join_marks(tokens))
        return super().decode_target(tokens, detokenize)

    def apply_bpe(self, tokens: str) -> str:
        return tokens

    def encode_words(self, words):
        """Tokens given already (``pretokenized``): each is one model token, as given."""
        return [[word] for word in words]


def read_lexicon(path: str | os.PathLike, *, normalization: str = "nfc", lowercase: bool = False,
                 split_marks: bool = False) -> tuple[list[str], list[str]]:
    """A ``word<TAB>symbols`` file -> (source lines of space-joined characters, target lines of
    space-joined symbols, their trailing marks split off with ``split_marks``), one per input line; any
    malformed line is a UserError naming it."""
    normalization = check_normalization(normalization)
    src, tgt = [], []
    for number, line in enumerate(read_lines(path), start=1):
        where = f"{path}:{number}"
        if "\t" not in line:
            raise UserError(f"{where}: no tab — write each entry as word<TAB>space-separated symbols")
        word, _, symbols = line.partition("\t")
        if "\t" in symbols:
            raise UserError(f"{where}: more than one tab — write each entry as word<TAB>space-separated "
                            "symbols (two columns)")
        chars = characters(word, normalization, lowercase)
        if not chars:
            raise UserError(f"{where}: empty word before the tab — give the word, or remove the line")
        if not symbols.split():
            raise UserError(f"{where}: empty pronunciation after the tab — give its symbols, or remove the line")
        src.append(" ".join(chars))
        if split_marks:
            alone = next((symbol for symbol in symbols.split() if marks_only(symbol)), None)
            if alone is not None:
                codes = " ".join(f"U+{ord(c):04X}" for c in alone)
                raise UserError(f"{where}: the symbol {alone!r} ({codes}) is marks alone — with split marks it "
                                "would join the symbol before it; write it onto that symbol, or prepare "
                                "without --split-marks")
            tgt.append(" ".join(split_symbol_marks(symbols.split())))
        else:
            tgt.append(" ".join(symbols.split()))
    return src, tgt


def prepare_lexicon(out_dir: str | os.PathLike, *, train, valid, test=None, normalization: str = "nfc",
                    lowercase: bool = False, options: BuildOptions | None = None, source: str = "lexicon",
                    settings: dict | None = None, split_marks: bool = False) -> dict:
    """Lexicon files (train and valid required, test optional) -> a transduction folder; the report."""
    normalization = check_normalization(normalization)
    for flag, value in (("train", train), ("valid", valid)):
        if value is None:
            raise UserError(f"prepare {source}: --{flag} is missing — give the {flag} lexicon (word<TAB>symbols)")
    splits, inputs = [], []
    for name, path in (("train", train), ("valid", valid), ("test", test)):
        if path is None:
            continue
        src, tgt = read_lexicon(path, normalization=normalization, lowercase=lowercase, split_marks=split_marks)
        splits.append(TextSplit(name, src, tgt, pretokenized=True))
        inputs.append(path)
    options = options or BuildOptions()
    if options.bpe_merges:
        raise UserError(f"bpe_merges={options.bpe_merges}: transduction data has no BPE — leave --bpe-merges out")
    record = {"source": "characters", "target": "symbols", "normalization": normalization,
              "lowercase": bool(lowercase), "space": SPACE, "marks": "split" if split_marks else "whole"}
    return build_prepared(out_dir, source=source, splits=splits, pipeline=Pipeline("chars", "symbols"),
                          options=options, inputs=inputs,
                          settings={**(settings or {}), "normalization": normalization, "lowercase": bool(lowercase),
                                    "split_marks": bool(split_marks)},
                          extra_meta={"task": "transduction", "transduction": record})


def sigmorphon_files(from_dir: str | os.PathLike, lang: str) -> dict[str, Path]:
    """Split name -> the SIGMORPHON 2021 task 1 file of ``lang`` in ``from_dir`` (or its medium/, high/,
    low/ subfolders); test is optional."""
    root = Path(from_dir)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder — give --from the folder of the shared task's TSV files")
    for folder in (root, root / "medium", root / "high", root / "low"):
        if (folder / f"{lang}_train.tsv").is_file():
            found = {name: folder / f"{lang}_{stem}.tsv" for name, stem in SIGMORPHON_SPLITS.items()}
            if not found["valid"].is_file():
                raise UserError(f"{found['valid']}: file not found — the shared task's folder has {lang}_dev.tsv "
                                "beside the training file")
            if not found["test"].is_file():
                del found["test"]
            return found
    known = sorted({p.name[: -len("_train.tsv")] for folder in (root, root / "medium", root / "high", root / "low")
                    if folder.is_dir() for p in folder.glob("*_train.tsv")})
    raise UserError(f"{root}: no {lang}_train.tsv here — choose --lang among: {', '.join(known) or 'none found'}")


def prepare_sigmorphon(out_dir: str | os.PathLike, *, from_dir, lang: str | None, normalization: str = "nfc",
                       options: BuildOptions | None = None, split_marks: bool = False) -> dict:
    """One language of the SIGMORPHON 2021 grapheme-to-phoneme task -> a transduction folder."""
    if not from_dir:
        raise UserError("prepare sigmorphon-g2p: give --from, the folder of the shared task's TSV files")
    if not lang:
        raise UserError("prepare sigmorphon-g2p: give --lang, e.g. --lang fre")
    files = sigmorphon_files(from_dir, lang)
    return prepare_lexicon(out_dir, train=files["train"], valid=files["valid"], test=files.get("test"),
                           normalization=normalization, options=options, source="sigmorphon-g2p",
                           settings={"lang": lang, "from_dir": str(from_dir)}, split_marks=split_marks)


def load_transduction(path: str | os.PathLike, reverse: bool = False) -> PreparedData:
    """A transduction folder (or a run's copy of its essentials) with its :class:`CharacterPipeline`."""
    data = load_prepared(path, reverse=reverse)
    record = data.meta.get("transduction")
    if not isinstance(record, dict):
        raise UserError(f"{Path(path) / 'meta.json'}: no 'transduction' record — prepare the data again with "
                        "varattn prepare lexicon (or sigmorphon-g2p)")
    split = record.get("marks") == "split"
    data.pipeline = CharacterPipeline(src_lang=data.pipeline.src_lang, tgt_lang=data.pipeline.tgt_lang,
                                      lowercase=bool(record.get("lowercase", False)),
                                      normalization=check_normalization(record.get("normalization", "nfc")),
                                      char_side="tgt" if reverse else "src", split_marks=split)
    if split and not reverse:
        data.target_marks = frozenset(i for i, token in enumerate(data.tgt_vocab.itos) if mark_token(token))
    return data

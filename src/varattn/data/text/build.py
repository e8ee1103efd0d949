"""Turning parallel text into a prepared data folder (the part every corpus recipe shares).

Steps, in order, for splits given as raw (or already tokenised) lines:

1. Unicode NFC and removal of format characters (category Cf, counted as ``format_chars_removed``), then
   tokenise and lowercase with the :class:`~varattn.data.text.tokenize.Pipeline` (skipped for lines marked
   ``pretokenized``); whitespace is normalised;
2. drop pairs with an empty side, in every split (counted as ``dropped_empty``, their 1-based line
   numbers in the split's input listed as ``empty_lines``, every one of them);
3. learn joint BPE on train source + target (``bpe_merges > 0``) and apply it to every split;
4. drop train pairs with more than ``max_len`` final tokens on either side (``dropped_long``, their line
   numbers, every one, as ``long_lines``); without a ``max_len`` the limit is :data:`DEFAULT_MAX_LEN`, so one stray
   paragraph cannot turn into a batch of its own far beyond the token budget; evaluation splits are kept
   whole unless ``filter_eval`` (their scores should cover the whole test set);
5. build source and target vocabularies from train;
6. write the folder (see :func:`write_prepared`) into a temporary sibling, then move it into place.

The folder layout (the trainer and evaluator rely on it)::

    meta.json                  format, source, inputs (path + sha256), settings, pipeline, splits (counts)
    vocab.src.json vocab.tgt.json
    bpe.codes                  when BPE was learned
    {split}.npz                src int32 [N_src_tokens], src_offsets int64 [n+1], tgt, tgt_offsets
    {split}.src.txt {split}.tgt.txt   final tokens, one pair per line, row i = npz row i
    {split}.ref.tgt            target before BPE (tokenised reference)
    {split}.raw.tgt            untokenised reference, when the corpus has one
    {split}.align              gold word alignments against {split}.ref.* tokens, when known
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from varattn.data.textio import sha256_file, staged_folder, write_lines
from varattn.data.text.tokenize import Pipeline, learn_bpe, normalize, remove_bpe
from varattn.data.vocab import UNK, Vocabulary
from varattn.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "TextSplit", "BuildOptions", "build_prepared", "encode_ragged"]

FORMAT = 1
DEFAULT_MAX_LEN = 250  # tokens per side of a training pair when the recipe sets no max_len


@dataclass
class TextSplit:
    """One split as text lines, before any filtering.

    Attributes:
        name: split name (``train``, ``valid``, ``test`` ...); ``train`` is required.
        src, tgt: parallel lines.
        pretokenized: the lines already went through tokenisation/lowercasing (or BPE); only whitespace
            is normalised.
        raw_ref: untokenised target lines, parallel to ``tgt`` (written as ``{split}.raw.tgt``).
        align: Pharaoh lines, parallel to ``tgt`` (written as ``{split}.align``).
    """

    name: str
    src: list[str]
    tgt: list[str]
    pretokenized: bool = False
    raw_ref: list[str] | None = None
    align: list[str] | None = None

    def __post_init__(self) -> None:
        for extra in (self.raw_ref, self.align):
            if extra is not None and len(extra) != len(self.src):
                raise ValueError(f"{self.name}: extra lines are not parallel to the split")
        if len(self.src) != len(self.tgt):
            raise ValueError(f"{self.name}: source and target differ in length")


@dataclass
class BuildOptions:
    """Settings of the shared steps (see the module docstring)."""

    bpe_merges: int = 0
    max_len: int | None = None
    filter_eval: bool = False
    min_freq: int = 1
    max_vocab: int | None = None
    progress: bool = True


def encode_ragged(vocab: Vocabulary, lines: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Token lists -> (ids int32 [sum of lengths], offsets int64 [n + 1]); row i is ids[off[i]:off[i+1]]."""
    lengths = np.fromiter((len(t) for t in lines), dtype=np.int64, count=len(lines))
    offsets = np.zeros(len(lines) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(
        (i for toks in lines for i in vocab.encode(toks)), dtype=np.int32, count=int(offsets[-1])
    )
    return ids, offsets


def _bar(it, desc: str, total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, disable=None if progress else True, leave=False, mininterval=1)


def build_prepared(
    out_dir: str | os.PathLike,
    *,
    source: str,
    splits: Sequence[TextSplit],
    pipeline: Pipeline,
    options: BuildOptions,
    inputs: Sequence[str | os.PathLike] = (),
    settings: dict[str, Any] | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict:
    """Run steps 1-6 and return the meta dictionary written to ``meta.json`` (plus ``"out"``).

    Args:
        out_dir: the folder to create; an existing *prepared* folder (one with meta.json) or an empty one
            is replaced, anything else is refused.
        source: the recipe name stored in meta.json.
        splits: the text splits; one must be named ``train``.
        pipeline: how raw text became / becomes tokens (its ``bpe_codes`` is set here when BPE is learned).
        options: the shared settings.
        inputs: files read, recorded with their SHA-256.
        settings: the recipe's options, recorded as given.
        extra_meta: more top-level entries for meta.json (recipe statistics, notes).
    """
    out = Path(out_dir)
    _check_out_dir(out)
    names = [s.name for s in splits]
    if "train" not in names or len(set(names)) != len(names):
        raise ValueError(f"splits must be distinct and include train, got {names}")
    if options.bpe_merges < 0:
        raise UserError(f"bpe_merges={options.bpe_merges}: must be 0 (no BPE) or positive")
    if options.max_len is not None and options.max_len < 1:
        raise UserError(f"max_len={options.max_len}: must be at least 1 — or leave it out for the default "
                        f"({DEFAULT_MAX_LEN})")
    if options.max_len is None:
        options = dataclasses.replace(options, max_len=DEFAULT_MAX_LEN)

    with staged_folder(out) as tmp:
        meta = _build(tmp, source, list(splits), pipeline, options, inputs, settings or {}, extra_meta or {})
    if pipeline.bpe_codes is not None:
        pipeline.bpe_codes = out / pipeline.bpe_codes.name
    return {**meta, "out": str(out)}


_OWN_FILE = re.compile(
    r"(meta\.json|vocab\.(src|tgt)\.json|bpe\.codes|.+\.(npz|src\.txt|tgt\.txt|ref\.tgt|raw\.tgt|align))"
)


def _check_out_dir(out: Path) -> None:
    """Refuse to replace anything but an empty folder or a prepared data folder (and nothing else)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder — choose another out_dir")
    entries = list(out.iterdir())
    if entries and not (out / "meta.json").is_file():
        raise UserError(f"{out}: folder is not empty and is not a prepared data folder — choose a new out_dir")
    foreign = [e.name for e in entries if not (e.is_file() and _OWN_FILE.fullmatch(e.name))]
    if foreign:
        raise UserError(
            f"{out}: holds files that prepare did not write (e.g. {foreign[0]}) — choose a new out_dir"
        )


def _build(tmp, source, splits, pipeline, options, inputs, settings, extra_meta) -> dict:
    stats: dict[str, dict[str, int]] = {}
    # 1-2: tokenise, drop empty pairs
    pretok: dict[str, tuple[list[str], list[str]]] = {}
    keep_idx: dict[str, list[int]] = {}
    for sp in splits:
        removed = 0
        normalised: list[list[str]] = []
        for side in (sp.src, sp.tgt):
            lines = []
            for line in side:
                text, count = normalize(line)
                lines.append(text)
                removed += count
            normalised.append(lines)
        if sp.pretokenized:
            src = [" ".join(x.split()) for x in normalised[0]]
            tgt = [" ".join(x.split()) for x in normalised[1]]
        else:
            n = len(sp.src)
            src = [
                pipeline.pretokenize(x, "src")
                for x in _bar(normalised[0], f"tokenise {sp.name}.src", n, options.progress)
            ]
            tgt = [
                pipeline.pretokenize(x, "tgt")
                for x in _bar(normalised[1], f"tokenise {sp.name}.tgt", n, options.progress)
            ]
        idx = [i for i in range(len(src)) if src[i] and tgt[i]]
        empty = [i + 1 for i in range(len(src)) if not (src[i] and tgt[i])]
        stats[sp.name] = {"dropped_empty": len(empty), "format_chars_removed": removed}
        if empty:
            stats[sp.name]["empty_lines"] = empty
            log.warning("%s: %d pairs with an empty side dropped (lines %s%s)", sp.name, len(empty),
                        ", ".join(map(str, empty[:10])), " ..." if len(empty) > 10 else "")
        keep_idx[sp.name] = idx
        pretok[sp.name] = ([src[i] for i in idx], [tgt[i] for i in idx])
        if not idx and sp.name == "train":
            raise UserError("training data: every pair has an empty side — check the input files")

    # 3: BPE
    merges_learned = 0
    if options.bpe_merges > 0:
        codes = tmp / "bpe.codes"
        tr_src, tr_tgt = pretok["train"]
        log.info("learning %d BPE merges on %d training pairs", options.bpe_merges, len(tr_src))
        merges_learned = learn_bpe(tr_src + tr_tgt, codes, options.bpe_merges,
                                   progress=options.progress and sys.stderr.isatty())
        pipeline.bpe_codes = codes
        pipeline._bpe = None
    final: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
    for sp in splits:
        src, tgt = pretok[sp.name]
        if options.bpe_merges > 0:
            n = len(src)
            src = [pipeline.apply_bpe(x) for x in _bar(src, f"bpe {sp.name}.src", n, options.progress)]
            tgt = [pipeline.apply_bpe(x) for x in _bar(tgt, f"bpe {sp.name}.tgt", n, options.progress)]
        final[sp.name] = ([x.split() for x in src], [x.split() for x in tgt])

    # 4: length filter
    for sp in splits:
        src, tgt = final[sp.name]
        keep = list(range(len(src)))
        if options.max_len is not None and (sp.name == "train" or options.filter_eval):
            keep = [i for i in keep if len(src[i]) <= options.max_len and len(tgt[i]) <= options.max_len]
        stats[sp.name]["dropped_long"] = len(src) - len(keep)
        if len(keep) != len(src):
            kept = set(keep)
            long_lines = [keep_idx[sp.name][i] + 1 for i in range(len(src)) if i not in kept]
            stats[sp.name]["long_lines"] = long_lines
            log.warning("%s: %d pairs longer than %d tokens dropped (lines %s%s)", sp.name, len(long_lines),
                        options.max_len, ", ".join(map(str, long_lines[:10])), " ..." if len(long_lines) > 10 else "")
            final[sp.name] = ([src[i] for i in keep], [tgt[i] for i in keep])
            pretok[sp.name] = tuple([side[i] for i in keep] for side in pretok[sp.name])  # type: ignore
            keep_idx[sp.name] = [keep_idx[sp.name][i] for i in keep]
        if not keep and sp.name == "train":
            raise UserError(
                f"training data: no pair is within max_len={options.max_len} tokens — raise max_len"
            )

    # 5: vocabularies
    src_vocab = Vocabulary.build(final["train"][0], min_freq=options.min_freq, max_size=options.max_vocab)
    tgt_vocab = Vocabulary.build(final["train"][1], min_freq=options.min_freq, max_size=options.max_vocab)
    src_vocab.save(tmp / "vocab.src.json")
    tgt_vocab.save(tmp / "vocab.tgt.json")

    # 6: split files
    for sp in splits:
        src, tgt = final[sp.name]
        src_ids, src_off = encode_ragged(src_vocab, src)
        tgt_ids, tgt_off = encode_ragged(tgt_vocab, tgt)
        with open(tmp / f"{sp.name}.npz", "wb") as f:
            np.savez(f, src=src_ids, src_offsets=src_off, tgt=tgt_ids, tgt_offsets=tgt_off)
        write_lines(tmp / f"{sp.name}.src.txt", (" ".join(t) for t in src))
        write_lines(tmp / f"{sp.name}.tgt.txt", (" ".join(t) for t in tgt))
        write_lines(tmp / f"{sp.name}.ref.tgt", (remove_bpe(x) for x in pretok[sp.name][1]))
        idx = keep_idx[sp.name]
        if sp.raw_ref is not None:
            write_lines(tmp / f"{sp.name}.raw.tgt", (sp.raw_ref[i].strip() for i in idx))
        if sp.align is not None:
            write_lines(tmp / f"{sp.name}.align", (sp.align[i] for i in idx))
        stats[sp.name] = {
            "pairs": len(src),
            **stats[sp.name],
            "src_tokens": int(src_ids.size),
            "tgt_tokens": int(tgt_ids.size),
            "src_unk": int((src_ids == UNK).sum()),
            "tgt_unk": int((tgt_ids == UNK).sum()),
        }
        log.debug("%s: %s", sp.name, stats[sp.name])

    meta = {
        "format": FORMAT,
        "source": source,
        "inputs": [{"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for p in inputs],
        "settings": {
            **settings,
            "bpe_merges": options.bpe_merges,
            "max_len": options.max_len,
            "filter_eval": options.filter_eval,
            "min_freq": options.min_freq,
            "max_vocab": options.max_vocab,
        },
        "pipeline": pipeline.to_dict(),
        "bpe_merges_learned": merges_learned,
        "vocab": {"src": len(src_vocab), "tgt": len(tgt_vocab)},
        "splits": stats,
        **extra_meta,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return meta

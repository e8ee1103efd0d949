"""Reading a prepared data folder (written by :mod:`varattn.data.text.build`).

``load_prepared(dir)`` reads ``meta.json``, both vocabularies and the pipeline at once and the split arrays
lazily. It also accepts a folder that holds only ``meta.json``, ``vocab.*.json`` and ``bpe.codes`` (a run
directory keeps such a copy, made by :meth:`PreparedData.copy_essentials`, for translation).

``load_prepared(dir, reverse=True)`` reads the same folder in the other direction (the target side becomes
the source: vocabularies, pipeline languages, token ids, text lines and gold links swap), so one
``varattn prepare`` serves a model of each direction (``data.reverse: true``). The essentials it copies into
a run describe the reversed direction, so the run loads on its own without knowing it was reversed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from varattn.data.text.build import FORMAT
from varattn.data.text.pharaoh import read_alignments
from varattn.data.textio import read_lines
from varattn.data.text.tokenize import Pipeline, remove_bpe
from varattn.data.vocab import Vocabulary
from varattn.errors import UserError

__all__ = ["ParallelSplit", "PreparedData", "load_prepared", "ESSENTIALS"]

ESSENTIALS = ("meta.json", "vocab.src.json", "vocab.tgt.json", "bpe.codes")
_AGAIN = "prepare the data again (varattn prepare)"


class ParallelSplit:
    """One split of token ids, rows aligned with ``{name}.src.txt`` / ``{name}.tgt.txt``.

    Attributes:
        name: the split name; ``folder``: where its files are.
        src_lengths, tgt_lengths: int64 [n] token counts (no BOS/EOS).
        reverse: the folder's target side is read as the source and its source side as the target.
    """

    def __init__(self, folder: Path, name: str, arrays: dict[str, np.ndarray], reverse: bool = False) -> None:
        self.folder = folder
        self.name = name
        self.reverse = reverse
        if reverse:
            arrays = {"src": arrays["tgt"], "src_offsets": arrays["tgt_offsets"],
                      "tgt": arrays["src"], "tgt_offsets": arrays["src_offsets"]}
        self._src = arrays["src"]
        self._tgt = arrays["tgt"]
        self._src_off = arrays["src_offsets"]
        self._tgt_off = arrays["tgt_offsets"]
        self.src_lengths: np.ndarray = np.diff(self._src_off)
        self.tgt_lengths: np.ndarray = np.diff(self._tgt_off)
        self._whole = len(self.src_lengths)  # pairs as stored: the text files' lines (see first())
        self.target_marks: frozenset = frozenset()  # see PreparedData.target_marks

    def __len__(self) -> int:
        return len(self.src_lengths)

    def first(self, count: int) -> "ParallelSplit":
        """The same split cut to its first ``count`` pairs (all of them when it has fewer); its text files
        are read whole and checked, then cut alike."""
        count = min(count, len(self))
        arrays = {"src": self._src, "src_offsets": self._src_off[: count + 1],
                  "tgt": self._tgt, "tgt_offsets": self._tgt_off[: count + 1]}
        cut = ParallelSplit(self.folder, self.name, arrays)
        cut.reverse, cut._whole, cut.target_marks = self.reverse, self._whole, self.target_marks
        return cut

    def __repr__(self) -> str:
        return f"ParallelSplit({self.name!r}, {len(self)} pairs)"

    def src(self, i: int) -> np.ndarray:
        """Source ids of pair ``i``: int32 [S_i] (a view; no BOS/EOS)."""
        return self._src[self._src_off[i] : self._src_off[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        """Target ids of pair ``i``: int32 [T_i] (a view; no BOS/EOS)."""
        return self._tgt[self._tgt_off[i] : self._tgt_off[i + 1]]

    def _lines(self, suffix: str, required: bool) -> list[str] | None:
        p = self.folder / f"{self.name}.{suffix}"
        if not p.is_file():
            if required:
                raise UserError(f"{p}: file missing — {_AGAIN}")
            return None
        lines = read_lines(p, allow_empty=True)
        if len(lines) != self._whole:
            raise UserError(f"{p}: has {len(lines)} lines but the split has {self._whole} pairs — {_AGAIN}")
        return lines[: len(self)]

    def references(self) -> list[str]:
        """Tokenised target references before BPE (``{name}.ref.tgt``; reversed: the source tokens with
        BPE removed), one per pair."""
        if self.reverse:
            return [remove_bpe(line) for line in self._lines("src.txt", required=True)]  # type: ignore[union-attr]
        return self._lines("ref.tgt", required=True)  # type: ignore[return-value]

    def raw_references(self) -> list[str] | None:
        """Untokenised target references (``{name}.raw.tgt``), or None when the corpus has none (nor
        when reversed: the untokenised source is not kept)."""
        return None if self.reverse else self._lines("raw.tgt", required=False)

    def source_lines(self) -> list[str]:
        """The final source tokens as text (``{name}.src.txt``)."""
        return self._lines("tgt.txt" if self.reverse else "src.txt", required=True)  # type: ignore[return-value]

    def target_lines(self) -> list[str]:
        """The final target tokens as text (``{name}.tgt.txt``)."""
        return self._lines("src.txt" if self.reverse else "tgt.txt", required=True)  # type: ignore[return-value]

    def gold_alignments(self) -> list[set[tuple[int, int]]] | None:
        """Gold word links per pair (source i, target j over the ``.ref`` words), or None."""
        p = self.folder / f"{self.name}.align"
        if not p.is_file():
            return None
        links = read_alignments(p)
        if len(links) != self._whole:
            raise UserError(f"{p}: has {len(links)} lines but the split has {self._whole} pairs — {_AGAIN}")
        links = links[: len(self)]
        return [{(j, i) for i, j in pair} for pair in links] if self.reverse else links


@dataclass
class PreparedData:
    """A prepared data folder: metadata, vocabularies, pipeline and (lazily) its splits."""

    path: Path
    meta: dict
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    pipeline: Pipeline
    reverse: bool = False  # the folder read target -> source (see the module docstring)
    # target ids that continue the symbol before them when outputs are compared symbol by symbol
    # (a transduction folder prepared with split marks, varattn.data.marks); every split carries them
    target_marks: frozenset = frozenset()
    _splits: dict[str, ParallelSplit] = field(default_factory=dict, repr=False)

    @property
    def split_names(self) -> list[str]:
        """The splits listed in meta.json, in the order they were prepared."""
        return list(self.meta.get("splits", {}))

    def has_split(self, name: str) -> bool:
        """True when the split's arrays are in this folder (a run directory's copy has none)."""
        return name in self.meta.get("splits", {}) and (self.path / f"{name}.npz").is_file()

    def split(self, name: str) -> ParallelSplit:
        """The split ``name``, loaded and checked on first use."""
        if name in self._splits:
            return self._splits[name]
        if name not in self.meta.get("splits", {}):
            avail = ", ".join(self.split_names) or "none"
            raise UserError(f"{self.path}: no split {name!r} — available splits: {avail}")
        p = self.path / f"{name}.npz"
        if not p.is_file():
            raise UserError(
                f"{p}: split file missing (this folder may hold only the vocabularies) — point to the "
                f"prepared data folder, or {_AGAIN}"
            )
        sizes = (len(self.src_vocab), len(self.tgt_vocab))
        sizes = sizes[::-1] if self.reverse else sizes  # the arrays on disk are in the folder's order
        sp = ParallelSplit(self.path, name, _load_arrays(p, *sizes), reverse=self.reverse)
        expected = self.meta["splits"][name].get("pairs")
        if expected is not None and expected != len(sp):
            raise UserError(f"{p}: holds {len(sp)} pairs but meta.json says {expected} — {_AGAIN}")
        sp.target_marks = self.target_marks
        self._splits[name] = sp
        return sp

    def copy_essentials(self, dst_dir: str | os.PathLike) -> list[Path]:
        """Copy meta.json, the vocabularies and bpe.codes (when present) into ``dst_dir``; return the
        copies. :func:`load_prepared` on ``dst_dir`` then gives the same vocabularies and pipeline."""
        dst = Path(dst_dir)
        dst.mkdir(parents=True, exist_ok=True)
        copied = []
        for name in ESSENTIALS:
            src = self.path / name
            if src.is_file():
                copied.append(Path(shutil.copy2(src, dst / name)))
        if self.reverse:  # the copy describes the reversed direction as a folder of its own
            self.src_vocab.save(dst / "vocab.src.json")
            self.tgt_vocab.save(dst / "vocab.tgt.json")
            (dst / "meta.json").write_text(json.dumps(self.meta, indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
        return copied


def _load_arrays(p: Path, src_v: int, tgt_v: int) -> dict[str, np.ndarray]:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("src", "src_offsets", "tgt", "tgt_offsets")}
    except KeyError as e:
        raise UserError(f"{p}: array {e} missing — {_AGAIN}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{p}: not a valid split file ({e}) — {_AGAIN}") from None
    for side, vsize in (("src", src_v), ("tgt", tgt_v)):
        ids, off = arrays[side], arrays[f"{side}_offsets"]
        if (
            ids.ndim != 1
            or off.ndim != 1
            or not np.issubdtype(ids.dtype, np.integer)
            or not np.issubdtype(off.dtype, np.integer)
            or len(off) < 1
            or off[0] != 0
            or off[-1] != len(ids)
            or np.any(np.diff(off) < 0)
        ):
            raise UserError(f"{p}: inconsistent {side} arrays — {_AGAIN}")
        if ids.size and (ids.min() < 0 or ids.max() >= vsize):
            raise UserError(f"{p}: {side} ids outside the vocabulary — {_AGAIN}")
    if len(arrays["src_offsets"]) != len(arrays["tgt_offsets"]):
        raise UserError(f"{p}: source and target hold different numbers of sentences — {_AGAIN}")
    return arrays


def _reversed_meta(meta: dict, root: Path) -> dict:
    """meta.json as it reads target -> source: languages, vocabulary sizes and token counts swapped."""
    out = json.loads(json.dumps(meta))
    pipeline = out["pipeline"]
    if isinstance(pipeline, dict):
        pipeline["src_lang"], pipeline["tgt_lang"] = pipeline.get("tgt_lang", "tgt"), pipeline.get("src_lang", "src")
    if isinstance(out.get("vocab"), dict):
        out["vocab"] = {"src": out["vocab"].get("tgt"), "tgt": out["vocab"].get("src")}
    for stats in out["splits"].values():
        if isinstance(stats, dict):
            for a, b in (("src_tokens", "tgt_tokens"), ("src_unk", "tgt_unk")):
                if a in stats and b in stats:
                    stats[a], stats[b] = stats[b], stats[a]
    out["reversed_from"] = str(root.resolve())
    return out


def load_prepared(path: str | os.PathLike, reverse: bool = False) -> PreparedData:
    """Open a prepared data folder (or a run directory's copy of its essentials); ``reverse`` reads it
    target -> source."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{root}: no such folder — run varattn prepare first, or check the path")
    mp = root / "meta.json"
    if not mp.is_file():
        raise UserError(
            f"{mp}: not found — {root} is not a prepared data folder; prepare the data into {root} first"
        )
    try:
        meta = json.loads(mp.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{mp}: not UTF-8 — {_AGAIN}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{mp}:{e.lineno}: invalid JSON ({e.msg}) — {_AGAIN}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise UserError(f"{mp}: unsupported format {got!r} (expected {FORMAT}) — {_AGAIN}")
    if not isinstance(meta.get("splits"), dict) or "pipeline" not in meta:
        raise UserError(f"{mp}: 'splits' or 'pipeline' missing — {_AGAIN}")
    vocabs = (Vocabulary.load(root / "vocab.src.json"), Vocabulary.load(root / "vocab.tgt.json"))
    if reverse:
        meta = _reversed_meta(meta, root)
        vocabs = vocabs[::-1]
    return PreparedData(
        path=root,
        meta=meta,
        src_vocab=vocabs[0],
        tgt_vocab=vocabs[1],
        pipeline=Pipeline.from_dict(meta["pipeline"], root),
        reverse=reverse,
    )

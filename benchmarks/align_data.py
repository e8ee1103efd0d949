"""The English-French alignment training text, written once for every aligner that is compared on it.

Unsupervised aligners train on the very sentences they are scored on, together with the parallel text at
hand. Here: Multi30k En-Fr train (29,000 caption pairs, ``tok/train.lc.norm.tok.{en,fr}``: lowercased,
Moses-tokenised and Moses-escaped) followed by the 447 Hansards gold sentences
(``alignment-gold/en-fr/test.en-fr``: tokenised, cased, no escapes). Both get the same normalisation:
Moses escapes undone (``l&apos; homme`` -> ``l' homme``), lowercased, split on whitespace and joined by
single spaces; the tokens of the gold sentences are never split or merged, so gold link k still indexes
word k.

:func:`write_training_text` writes, into one folder:

- ``train.en``, ``train.fr``: the 29,447 sentences, one a line (Multi30k first, then the gold sentences);
- ``train.en-fr``: the same as ``English ||| French`` lines (fast_align's and eflomal's input, and
  ``varattn align --pairs``/``align-corpus``);
- ``gold.en``, ``gold.fr``, ``gold.en-fr``: the 447 gold sentences alone, normalised the same way;
- ``gold.align``: the gold links, 0-based (``i-j`` sure, ``ipj`` possible; i English, j French);
- ``manifest.json``: the sources, their SHA-256, the counts and where the gold lines start.

It is rewritten only when missing or made from other inputs, so a run can reuse it. From the shell:

    python benchmarks/align_data.py --data ../shared/data --out runs/align-enfr/text
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
from pathlib import Path

from harness import write_json, write_text

MULTI30K = ("multi30k/tok/train.lc.norm.tok.en", "multi30k/tok/train.lc.norm.tok.fr")
GOLD_TEXT = "alignment-gold/en-fr/test.en-fr"
GOLD_LINKS = "alignment-gold/en-fr/enfr.talp"
FILES = ("train.en", "train.fr", "train.en-fr", "gold.en", "gold.fr", "gold.en-fr", "gold.align", "manifest.json")


def normalise(line: str) -> str:
    """Moses escapes undone, lowercased, whitespace-separated tokens joined by one space."""
    return " ".join(html.unescape(token).lower() for token in line.split())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def gold_zero_based(line: str, where: str) -> str:
    """One 1-based gold line -> 0-based, keeping sure (``-``) and possible (``p``) marks."""
    out = []
    for item in line.split():
        mark = "p" if "p" in item else "-"
        left, _, right = item.partition(mark)
        if not (left.isdigit() and right.isdigit()) or int(left) < 1 or int(right) < 1:
            raise ValueError(f"{where}: link {item!r} is not 1-based 'i-j' or 'ipj'")
        out.append(f"{int(left) - 1}{mark}{int(right) - 1}")
    return " ".join(out)


def write_training_text(data: str | Path, out: str | Path) -> dict:
    """Write the files listed in the module docstring into ``out`` (from the shared data folder ``data``);
    returns the manifest. Files already there from the same inputs are kept."""
    data, out = Path(data), Path(out)
    sources = [data / name for name in (*MULTI30K, GOLD_TEXT, GOLD_LINKS)]
    for path in sources:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing — point --data at the shared data folder")
    inputs = {str(path.relative_to(data)): _sha256(path) for path in sources}
    manifest_path = out / "manifest.json"
    if manifest_path.is_file() and all((out / name).is_file() for name in FILES):
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("inputs") == inputs:
            return manifest
    english, french = (_read(data / name) for name in MULTI30K)
    if len(english) != len(french):
        raise ValueError(f"{data / MULTI30K[0]} and {data / MULTI30K[1]}: {len(english)} and {len(french)} lines")
    gold_en, gold_fr = [], []
    for n, line in enumerate(_read(data / GOLD_TEXT), 1):
        left, sep, right = line.partition("|||")
        if not sep or not left.strip() or not right.strip():
            raise ValueError(f"{data / GOLD_TEXT}:{n}: not 'English ||| French'")
        gold_en.append(normalise(left))
        gold_fr.append(normalise(right))
    links = [gold_zero_based(line, f"{data / GOLD_LINKS}:{n}") for n, line in enumerate(_read(data / GOLD_LINKS), 1)]
    if len(links) != len(gold_en):
        raise ValueError(f"{data / GOLD_LINKS}: {len(links)} lines for {len(gold_en)} gold sentences")
    train_en = [normalise(line) for line in english] + gold_en
    train_fr = [normalise(line) for line in french] + gold_fr
    out.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # written last: its presence says the folder is whole

    def put(name: str, lines: list[str]) -> None:
        write_text(out / name, "".join(line + "\n" for line in lines))

    put("train.en", train_en)
    put("train.fr", train_fr)
    put("train.en-fr", [f"{e} ||| {f}" for e, f in zip(train_en, train_fr)])
    put("gold.en", gold_en)
    put("gold.fr", gold_fr)
    put("gold.en-fr", [f"{e} ||| {f}" for e, f in zip(gold_en, gold_fr)])
    put("gold.align", links)
    manifest = {"inputs": inputs, "pairs": len(train_en), "multi30k_pairs": len(english),
                "gold_pairs": len(gold_en), "gold_first_line": len(english) + 1,
                "normalisation": "Moses escapes undone (html.unescape per token), lowercased, whitespace-split",
                "gold_links": "gold.align: 0-based, i English word, j French word, '-' sure, 'p' possible"}
    write_json(manifest_path, manifest)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--out", default="runs/align-enfr/text", help="folder to write")
    args = parser.parse_args()
    manifest = write_training_text(args.data, args.out)
    print(f"{args.out}: {manifest['pairs']} pairs, gold from line {manifest['gold_first_line']}")


if __name__ == "__main__":
    main()

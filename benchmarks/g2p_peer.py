"""A peer G2P system on the same data: Phonetisaurus (joint-sequence WFST n-gram model; the PyPI
package ``phonetisaurus`` 0.3.0 with its bundled binaries, default settings: EM many-to-many alignment
with up to two letters and two phones per chunk and phone deletions, an order-8 joint n-gram model),
trained on each language's train split, its best pronunciation scored on test with the same WER and PER
as varattn (:mod:`varattn.tasks.transduction.metrics`). Spaces inside words (Vietnamese) are written ▁,
as varattn's source tokens do, since Phonetisaurus splits a lexicon entry on whitespace.

Phonetisaurus is installed apart from varattn's environment (it pins nothing varattn needs):

    python -m venv /tmp/peer && /tmp/peer/bin/pip install phonetisaurus
    python benchmarks/g2p_peer.py --phonetisaurus /tmp/peer/bin/phonetisaurus [--langs fre kor]

The aligned training corpus (``--corpus``: Phonetisaurus' EM many-to-many alignment of every training
entry) is kept as ``WORK/LANG.corpus``; ``g2p_sigmorphon.py align`` compares varattn's alignments with it.
Each finished language is written at once to ``benchmarks/results/g2p_peer.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import unicodedata
from pathlib import Path

from harness import RESULTS, ROOT, SHARED, commit, fmt, machine, table, write_results
from varattn.tasks.transduction import metrics
from workloads import BASELINE, LANGS

SPACE = "\u2581"


def read(path: Path, normalization: str = "nfc") -> list[tuple[str, list[str]]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        word, _, phones = line.partition("\t")
        word = unicodedata.normalize(normalization.upper(), word)
        entries.append((SPACE.join(word.split()), phones.split()))
    return entries


def label(record: dict) -> str:
    return record["lang"] + ("" if record.get("normalization", "nfc") == "nfc" else f" ({record['normalization']})")


def score_language(tool: str, shared: Path, work: Path, lang: str, normalization: str = "nfc") -> dict:
    work.mkdir(parents=True, exist_ok=True)
    train = read(shared / f"{lang}_train.tsv", normalization)
    test = read(shared / f"{lang}_test.tsv", normalization)
    if normalization != "nfc":
        work = work / normalization
        work.mkdir(parents=True, exist_ok=True)
    lexicon = work / f"{lang}.train.txt"
    lexicon.write_text("".join(f"{w}\t{' '.join(p)}\n" for w, p in train), encoding="utf-8")
    model = work / f"{lang}.fst"
    started = time.perf_counter()
    subprocess.run([tool, "train", "--model", str(model), "--corpus", str(work / f"{lang}.corpus"), "--casing",
                    "ignore", str(lexicon)], check=True, capture_output=True)
    train_seconds = time.perf_counter() - started
    words = work / f"{lang}.test.words"
    words.write_text("".join(w + "\n" for w, _ in test), encoding="utf-8")
    started = time.perf_counter()
    with open(words, encoding="utf-8") as stdin:
        done = subprocess.run([tool, "predict", "--model", str(model), "--casing", "ignore", "--word-separator", "\t"],
                              stdin=stdin, check=True, capture_output=True, text=True)
    predict_seconds = time.perf_counter() - started
    predicted: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        word, _, phones = line.partition("\t")
        predicted.setdefault(word, phones.split())
    hypotheses = [predicted.get(w, []) for w, _ in test]
    references = [p for _, p in test]
    aligned = len((work / f"{lang}.corpus").read_text(encoding="utf-8").splitlines())
    return {"lang": lang, "normalization": normalization, "aligned_train": aligned, "train_words": len(train),
            "test_wer": metrics.wer(hypotheses, references), "test_per": metrics.per(hypotheses, references),
            "missing": sum(w not in predicted for w, _ in test), "train_seconds": round(train_seconds, 1),
            "predict_seconds": round(predict_seconds, 1), "commit": commit(), "machine": machine(threads=1),
            "command": f"phonetisaurus train --model {lang}.fst --casing ignore {lang}.train.txt; phonetisaurus "
                       f"predict --model {lang}.fst --casing ignore --word-separator '\\t' < {lang}.test.words"}


def write(results: list[dict]) -> None:
    plain = [r for r in results if r.get("normalization", "nfc") == "nfc"]
    others = {r["lang"]: r for r in results if r.get("normalization", "nfc") != "nfc"}
    rows = [[label(r), f"{BASELINE[r['lang']]:.2f}", f"{r['test_wer']:.2f}", f"{r['test_per']:.2f}",
             f"{r['train_seconds']:.0f}", f"{r['predict_seconds']:.0f}", r["missing"], fmt(r.get("aligned_train"), "d"), r["commit"]] for r in results]
    for name, chosen in [("", plain), (" with " + ", ".join(map(label, others.values())),
                                       [others.get(r["lang"], r) for r in plain])] if others else [("", plain)]:
        results = chosen
        if not results:
            continue
        macro = metrics.macro({r["lang"]: r["test_wer"] for r in results})
        base = metrics.macro({r["lang"]: BASELINE[r["lang"]] for r in results})
        train = sum(r["train_seconds"] for r in results)
        predict = sum(r["predict_seconds"] for r in results)
        rows.append([f"**macro over {len(results)}{name}**", f"{base:.2f}", f"{macro:.2f}",
                     f"{metrics.macro({r['lang']: r['test_per'] for r in results}):.2f}",
                     f"{train:.0f} (total)", f"{predict:.0f} (total)", sum(r["missing"] for r in results), "", ""])
    results = plain + list(others.values())
    lines = ["# Peer: Phonetisaurus on SIGMORPHON 2021 task 1 medium (issue 23)", "",
             "Written by `python benchmarks/g2p_peer.py`. Phonetisaurus 0.3.0 from PyPI, default training settings, "
             "best pronunciation, test split; WER and PER computed by varattn's metrics.", "",
             "Wall seconds on one thread: train (EM alignment and the joint n-gram model) and predict (the "
             "1,000 test words); missing: test words without a prediction (scored as wrong); aligned: the training "
             "words (of 8,000) the EM aligner aligned, the rest are left out of the model (a letter can take at "
             "most two phones, e.g. a Hangul syllable with a final consonant cannot). A row marked (nfd) reads "
             "the words in NFD (`--nfd LANG`: Hangul as jamo), as varattn's `--normalization nfd` runs.", "",
             table(["language", "baseline WER", "Phonetisaurus WER", "PER", "train s", "predict s", "missing",
                    "aligned", "commit"], rows, align="l" * 9)]
    if results:
        lines += ["", "Command per language (in the work folder):", "", "```", results[0]["command"], "```"]
    write_results(RESULTS / "g2p_peer", {"results": results}, "\n".join(lines), threads=1)


def finished() -> list[dict]:
    """The languages written so far (``g2p_peer.json``: a stamped record, or the list earlier versions wrote)."""
    path = RESULTS / "g2p_peer.json"
    if not path.is_file():
        return []
    found = json.loads(path.read_text(encoding="utf-8"))
    return found["results"] if isinstance(found, dict) else found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phonetisaurus", default="phonetisaurus", help="the phonetisaurus command")
    parser.add_argument("--shared", default=str(SHARED / "sigmorphon2021-g2p" / "medium"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "g2p-peer"))
    parser.add_argument("--langs", nargs="+", default=LANGS)
    parser.add_argument("--nfd", action="store_true", help="read the words of --langs in NFD (Hangul as jamo)")
    parser.add_argument("--report", action="store_true", help="rewrite the tables from g2p_peer.json only")
    args = parser.parse_args(argv)
    if args.report:
        write(order(finished()))
        return
    normalization = "nfd" if args.nfd else "nfc"
    results = [r for r in finished() if r["lang"] not in args.langs or r.get("normalization", "nfc") != normalization]
    for lang in args.langs:
        results.append(score_language(args.phonetisaurus, Path(args.shared), Path(args.work), lang, normalization))
        print(f"{label(results[-1])}: WER {results[-1]['test_wer']:.2f}, train {results[-1]['train_seconds']:.0f} s",
              flush=True)
        write(order(results))


def order(results: list[dict]) -> list[dict]:
    return sorted(results, key=lambda r: (LANGS.index(r["lang"]), r.get("normalization", "nfc")))


if __name__ == "__main__":
    main()

"""What a g2p run's word errors are made of (issue 23): WER as scored, and WER once every phone is
stripped of its diacritics and length marks (NFD, combining marks and ``ː`` removed), so that the share
of errors that are only tone, accent or length shows.

    python benchmarks/g2p_errors.py runs/g2p/runs/hbs_latn-marginal-s2 --lang hbs_latn --split dev

Decodes the split's words with ``varattn translate RUN --beam 5`` (the words as the shared task gives
them) and writes ``benchmarks/results/g2p_errors.{md,json}``, one row per run and split, rows of earlier
calls kept.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import unicodedata
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, commit, machine, rel, table, write_results

MARKS = "ːˑ"


def segmental(phones: str) -> str:
    """``phones`` without diacritics (combining marks after NFD) and length marks."""
    decomposed = unicodedata.normalize("NFD", phones)
    return "".join(c for c in decomposed if not unicodedata.combining(c) and c not in MARKS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run")
    parser.add_argument("--lang", required=True)
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--shared", default=str(SHARED / "sigmorphon2021-g2p" / "medium"))
    args = parser.parse_args(argv)
    entries = [line.split("\t") for line in
               (Path(args.shared) / f"{args.lang}_{args.split}.tsv").read_text(encoding="utf-8").splitlines() if line]
    with tempfile.TemporaryDirectory() as tmp:
        words, out = Path(tmp) / "words.txt", Path(tmp) / "out.txt"
        words.write_text("".join(w + "\n" for w, _ in entries), encoding="utf-8")
        command = ["translate", rel(Path(args.run)), "--input", str(words), "--output", str(out), "--beam", "5",
                   "--device", "cpu"]
        harness.varattn(*command, log=Path(tmp) / "log.txt", cwd=ROOT)
        hyps = out.read_text(encoding="utf-8").splitlines()
    refs = [p for _, p in entries]
    wer = 100 * sum(h != r for h, r in zip(hyps, refs)) / len(refs)
    seg = 100 * sum(segmental(h) != segmental(r) for h, r in zip(hyps, refs)) / len(refs)
    row = {"run": rel(Path(args.run)), "lang": args.lang, "split": args.split, "words": len(refs), "wer": wer,
           "segmental_wer": seg, "commit": commit()}
    path = RESULTS / "g2p_errors.json"
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"] if path.is_file() else []
    rows = [r for r in rows if (r["run"], r["split"]) != (row["run"], row["split"])] + [row]
    lines = ["# G2P: which errors (issue 23)", "",
             "Written by `python benchmarks/g2p_errors.py RUN --lang LANG --split SPLIT`: WER of beam 5 as scored, "
             "and once every phone is stripped of diacritics and length marks (tone, pitch accent and length "
             "errors no longer count).", "",
             table(["run", "split", "words", "WER", "WER without diacritics and length", "share of errors only "
                    "diacritics/length", "commit"],
                   [[r["run"], r["split"], r["words"], f"{r['wer']:.2f}", f"{r['segmental_wer']:.2f}",
                     f"{(r['wer'] - r['segmental_wer']) / r['wer']:.0%}" if r["wer"] else "–", r["commit"]]
                    for r in rows], align="l" * 7)]
    write_results(RESULTS / "g2p_errors", {"rows": rows, "machine": machine(threads=1)}, "\n".join(lines), threads=1)
    print(f"{args.lang} {args.split}: WER {wer:.2f}, without diacritics and length {seg:.2f}")


if __name__ == "__main__":
    main()

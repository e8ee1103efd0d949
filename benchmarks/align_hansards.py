"""Word alignment on real gold: Hansards English-French (447 pairs, sure/possible links), varattn's
aligner trained both ways on Multi30k En-Fr plus the gold sentences, AER against training minutes.

The training text is Multi30k's 29,000 lowercased, tokenised caption pairs with the Moses escapes
undone, plus the 447 gold sentences lowercased (unsupervised aligners train on the text they align);
the gold sentences double as the validation split (their text only, never their links). The two
directions train at the same time, one process and one thread each, in stages of ``--stage-minutes``;
after every stage both directions' last checkpoints align the 447 pairs and every distribution the
model gives is scored forward, reverse, intersected and grow-diag-final-and, so the table is a
learning curve. Rows are appended to the results as each stage finishes.

    python benchmarks/align_hansards.py --recipe configs/align/hmm.yaml --stages 3 --stage-minutes 4
    python benchmarks/align_hansards.py --recipe configs/align/hmm.yaml model.mode=marginal --name marginal

Writes ``align_hansards_{name}.json`` and ``.md`` into ``--results`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import html
import json
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, command_line, fmt, table, write_results, write_text

GOLD = SHARED / "alignment-gold" / "en-fr"
MULTI30K = SHARED / "multi30k" / "tok"
SYMMETRISATIONS = ("intersect", "grow-diag-final-and")


def unescape(line: str) -> str:
    """Multi30k's tokenised text carries Moses escapes (``&apos;``, ``&quot;``, ``&amp;`` ...)."""
    return html.unescape(line.strip())


def gold_pairs() -> list[tuple[str, str]]:
    pairs = []
    for number, line in enumerate((GOLD / "test.en-fr").read_text(encoding="utf-8").splitlines(), 1):
        english, sep, french = line.partition(" ||| ")
        if not sep:
            raise SystemExit(f"{GOLD / 'test.en-fr'}:{number}: no ' ||| ' between the sentences")
        pairs.append((" ".join(english.lower().split()), " ".join(french.lower().split())))
    return pairs


def write_corpus(folder: Path) -> dict[str, Path]:
    """Training and validation text (en, fr) and the lowercased gold pairs; written once."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / name for name in ("train.en", "train.fr", "valid.en", "valid.fr", "gold.pairs")}
    if all(path.is_file() for path in files.values()):
        return files
    gold = gold_pairs()
    english = [unescape(x) for x in (MULTI30K / "train.lc.norm.tok.en").read_text(encoding="utf-8").splitlines()]
    french = [unescape(x) for x in (MULTI30K / "train.lc.norm.tok.fr").read_text(encoding="utf-8").splitlines()]
    contents = {"train.en": english + [e for e, _ in gold], "train.fr": french + [f for _, f in gold],
                "valid.en": [e for e, _ in gold], "valid.fr": [f for _, f in gold],
                "gold.pairs": [f"{e} ||| {f}" for e, f in gold]}
    for name, lines in contents.items():
        write_text(files[name], "".join(line + "\n" for line in lines))
    return files


def score_stage(forward_run: Path, reverse_run: Path, pairs_file: Path) -> list[dict]:
    """Every distribution both runs give, forward / reverse / symmetrised, scored on the gold."""
    import torch

    from varattn.analysis import aer, align, wordlinks
    from varattn.training.runs import load_run

    torch.set_num_threads(2)
    device = torch.device("cpu")
    fwd, rev = (load_run(run / "checkpoint_last.json", device) for run in (forward_run, reverse_run))
    lines = pairs_file.read_text(encoding="utf-8").splitlines()
    src = [line.split(" ||| ")[0].split() for line in lines]
    tgt = [line.split(" ||| ")[1].split() for line in lines]
    golds = aer.read_gold(GOLD / "enfr.talp", one_based=True)
    forward_pairs = align.align_words(fwd, src, tgt)
    reverse_pairs = align.align_words(rev, tgt, src)
    rows = []
    for name in forward_pairs[0].matrices:
        row = {"distribution": name}
        one = wordlinks.one_direction(forward_pairs, name)
        row["forward"] = wordlinks.score(one, golds).as_dict()
        back = wordlinks.one_direction(reverse_pairs, name)
        transposed = [aer.GoldLinks(frozenset((j, i) for i, j in g.sure), frozenset((j, i) for i, j in g.possible))
                      for g in golds]
        row["reverse"] = wordlinks.score(back, transposed).as_dict()
        for heuristic in SYMMETRISATIONS:
            both = wordlinks.two_directions(forward_pairs, reverse_pairs, heuristic, name=name, reverse_name=name)
            row[heuristic] = wordlinks.score(both, golds).as_dict()
        rows.append(row)
    return rows


def write_stages(results: Path, name: str, record: dict, command: str) -> None:
    rows = [[f"{stage['minutes']:.1f}", row["distribution"], f"{row['forward']['aer']:.3f}",
             f"{row['reverse']['aer']:.3f}", f"{row['intersect']['aer']:.3f}",
             f"{row['grow-diag-final-and']['aer']:.3f}",
             f"{row['intersect']['precision']:.3f} / {row['intersect']['recall']:.3f}",
             f"{fmt(stage['ppl'][0], '.1f')} / {fmt(stage['ppl'][1], '.1f')}"]
            for stage in record["stages"] for row in stage["rows"]]
    out = [f"# Hansards En-Fr dev gold: varattn `{name}`", "",
           "One thread per direction, both directions trained at the same time.", "",
           table(["minutes (wall, both directions)", "distribution", "forward", "reverse", "intersect",
                  "grow-diag-final-and", "intersect P / R", "valid PPL fwd / rev"], rows, align="rlrrrrll")]
    out += ["", "AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|); links are each target word's argmax source word "
            "over the word matrix (pieces averaged); eflomal on the same text: intersect 0.133, "
            "grow-diag-final-and 0.150 (benchmarks/results/peer_aligners.md)."]
    write_results(results / f"align_hansards_{name}", record, "\n".join(out), command=command, threads=1)


def last_ppl(run: Path) -> float:
    lines = (run / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1]).get("ppl", float("nan")) if lines else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "align" / "hmm.yaml"))
    parser.add_argument("--name", default="hmm")
    parser.add_argument("--work", default="runs/align-hansards")
    parser.add_argument("--bpe-merges", type=int, default=4000)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--stage-minutes", type=float, default=4.0)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("overrides", nargs="*", help="section.key=value for both directions' training")
    args = parser.parse_args()
    work = Path(args.work)
    files = write_corpus(work / "text")
    data = work / f"data-bpe{args.bpe_merges}"
    if not (data / "meta.json").is_file():
        try:
            harness.varattn("prepare", "files", "--train-src", files["train.en"], "--train-tgt", files["train.fr"],
                            "--valid-src", files["valid.en"], "--valid-tgt", files["valid.fr"], "--src-lang", "en",
                            "--tgt-lang", "fr", "--no-lowercase", "--bpe-merges", args.bpe_merges, "--max-len", "80",
                            "--out", data, log=work / "prepare.log")
        except harness.Failed as failed:
            raise SystemExit(f"prepare failed: {failed}") from None
    runs = {d: work / f"{args.name}-{d}" for d in ("en-fr", "fr-en")}
    command = command_line(__file__)
    record = {"recipe": args.recipe, "overrides": args.overrides, "bpe_merges": args.bpe_merges, "stages": []}
    minutes = 0.0
    for stage in range(args.stages):
        started = time.perf_counter()
        processes = []
        for direction, run in runs.items():
            budget = [f"train.max_seconds={args.stage_minutes * 60:.0f}", "train.progress=false", "train.device=cpu"]
            if (run / "checkpoint_last.json").is_file():
                train = ["train", "--resume", "--out", str(run), *budget]
            else:
                train = ["train", args.recipe, "--out", str(run), f"data.dir={data}",
                         f"data.reverse={'true' if direction == 'fr-en' else 'false'}", *args.overrides, *budget]
            processes.append(harness.start(harness.varattn_command(*train), log=work / f"{run.name}.log"))
        codes = [harness.wait(p, check=False) for p in processes]
        if any(codes):
            raise SystemExit(f"training failed ({codes}): see {work}/*.log")
        minutes += (time.perf_counter() - started) / 60
        rows = score_stage(runs["en-fr"], runs["fr-en"], files["gold.pairs"])
        record["stages"].append({"minutes": minutes, "rows": rows,
                                 "ppl": [last_ppl(runs["en-fr"]), last_ppl(runs["fr-en"])]})
        write_stages(Path(args.results), args.name, record, command)
        best = min(r["intersect"]["aer"] for r in rows)
        print(f"stage {stage + 1}: {minutes:.1f} min, best intersect AER {best:.3f}", flush=True)


if __name__ == "__main__":
    main()

"""G2P ensembles on SIGMORPHON 2021 task 1, medium subtask (issue 23): the runs `g2p_sigmorphon.py` trained,
decoded together with `varattn evaluate RUN --ensemble RUN ...` (the mean of the members' next-word
probabilities, beam 5).

Per language the ensembles are fixed before anything is scored, from the finished runs of the work folders
whose best checkpoint is still on disk (``WORK/runs/LANG-MODE-sSEED``):

- ``marginal``: every `marginal` run of the language;
- ``all``: every run of the language, whatever its mode and size.

Runs of several work folders (``--work A B``) join one ensemble only when their prepared vocabularies are
the same (the same TSVs with the same normalisation); the first folder's data is decoded. A set of fewer
than two runs is skipped. Dev and test are both decoded; choosing among single runs and ensembles is
`g2p_sigmorphon.py best --tables ... g2p_ensemble`'s, on dev.

Each finished ensemble writes ``WORK/ensembles/LANG-SET.json`` (the first work folder) and the tables
``benchmarks/results/g2p_ensemble.{md,json}`` are rewritten from them, so a stop loses at most the one in
progress; finished ones are skipped.

    python benchmarks/g2p_ensemble.py run                                   # every language of runs/g2p
    python benchmarks/g2p_ensemble.py run --work runs/g2p-big-nfd --langs kor hbs_latn --results g2p_ensemble_nfd
    python benchmarks/g2p_ensemble.py report
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, commit, fmt, machine, rel, table, write_json, write_results
from workloads import BASELINE, BASELINE_MACRO, LANGS

SETS = ("marginal", "all")
RUN_NAME = re.compile(r"^(?P<lang>[a-z_]+)-(?P<mode>[a-z-]+)-s(?P<seed>\d+)$")  # e.g. arm_e-hard-enum-s1


def finished_runs(work: Path, lang: str) -> list[Path]:
    """The run folders of ``lang`` in ``work`` that finished (their record is in ``WORK/results``) and
    still have their best checkpoint, by name."""
    folder = work / "runs"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "checkpoint_best.json").is_file()
                  and (work / "results" / f"{p.name}.json").is_file()
                  and (m := RUN_NAME.match(p.name)) and m["lang"] == lang)


def same_vocabularies(a: Path, b: Path) -> bool:
    return all((a / "data" / name).read_bytes() == (b / "data" / name).read_bytes()
               for name in ("vocab.src.json", "vocab.tgt.json"))


def members(works: list[Path], lang: str, which: str) -> list[Path]:
    """The runs of the ensemble ``which`` (see the module docstring) for ``lang``."""
    runs = [run for work in works for run in finished_runs(work, lang)]
    if which == "marginal":
        runs = [run for run in runs if RUN_NAME.match(run.name)["mode"] == "marginal"]
    if runs:
        runs = [run for run in runs if same_vocabularies(run, runs[0])]
    return runs


def describe(runs: list[Path]) -> str:
    """e.g. ``soft×2 marginal×3 (g2p, g2p-big)``."""
    modes: dict[str, int] = {}
    for run in runs:
        mode = RUN_NAME.match(run.name)["mode"]
        modes[mode] = modes.get(mode, 0) + 1
    folders = sorted({run.parent.parent.name for run in runs})
    return " ".join(f"{m}×{n}" for m, n in modes.items()) + f" ({', '.join(folders)})"


def do_ensemble(works: list[Path], lang: str, which: str, runs: list[Path]) -> dict:
    """Decode dev and test with the ensemble; its record (also written to WORK/ensembles)."""
    work = works[0]
    folder = work / "ensembles"
    folder.mkdir(parents=True, exist_ok=True)
    data = work / "data" / lang
    log = folder / f"{lang}-{which}.log"
    scores, seconds, commands = {}, {}, []
    for split in ("valid", "test"):
        out = folder / f"{lang}-{which}-{split}.eval.json"
        command = ["evaluate", rel(runs[0]), "--ensemble", *map(rel, runs[1:]), "--data", rel(data), "--split", split,
                   "--beam", "5", "--kmax", "--json", rel(out), "--device", "cpu"]
        try:
            seconds[split] = harness.varattn(*command, log=log, cwd=ROOT)
        except harness.Failed as failed:
            raise SystemExit(str(failed)) from None
        scores[split] = json.loads(out.read_text(encoding="utf-8"))
        commands.append("varattn " + " ".join(command))
    record = {"lang": lang, "mode": f"ensemble-{which}", "seed": 0, "members": [rel(r) for r in runs],
              "description": describe(runs), "dev_wer": scores["valid"]["wer"], "dev_per": scores["valid"]["per"],
              "test_wer": scores["test"]["wer"], "test_per": scores["test"]["per"],
              "eval_seconds": {k: round(v, 1) for k, v in seconds.items()}, "commands": commands,
              "commit": commit(), "machine": machine(threads=1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(folder / f"{lang}-{which}.json", record)
    return record


def load_records(work: Path) -> list[dict]:
    folder = work / "ensembles"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*-*.json"))
            if not p.name.endswith(".eval.json")] if folder.is_dir() else []


def report(work: Path, results_name: str) -> None:
    records = load_records(work)
    lines = ["# G2P: ensembles of the trained runs (issue 23)", "",
             "Written by `benchmarks/g2p_ensemble.py` (module docstring: how the members are chosen). Each row: "
             "`varattn evaluate FIRST --ensemble OTHERS ...`, beam 5, the mean of the members' next-word "
             "probabilities; test WER (%), dev WER in brackets. For comparison the mean over the same "
             "members run alone, from their own records. The baseline is the shared task's test WER.", ""]
    rows = []
    for r in sorted(records, key=lambda r: (LANGS.index(r["lang"]) if r["lang"] in LANGS else 99, r["mode"])):
        alone = [json.loads((ROOT / m / "eval-test.json").read_text(encoding="utf-8"))["wer"] for m in r["members"]
                 if (ROOT / m / "eval-test.json").is_file()]
        alone_dev = [json.loads((ROOT / m / "eval-valid.json").read_text(encoding="utf-8"))["wer"]
                     for m in r["members"] if (ROOT / m / "eval-valid.json").is_file()]
        rows.append([r["lang"], r["mode"], r["description"], f"{r['test_wer']:.2f} ({r['dev_wer']:.2f})",
                     f"{statistics.mean(alone):.2f} ({statistics.mean(alone_dev):.2f})" if alone else "–",
                     f"{min(alone):.2f}" if alone else "–", fmt(BASELINE.get(r["lang"])),
                     f"{sum(r['eval_seconds'].values()):.0f}", r["commit"]])
    lines.append(table(["language", "ensemble", "members", "test WER (dev)", "members alone: mean (dev)",
                        "best member's test", "baseline", "eval s", "commit"], rows, align="l" * 9))
    for which in SETS:
        done = [r for r in records if r["mode"] == f"ensemble-{which}"]
        if done:
            test = statistics.mean(r["test_wer"] for r in done)
            base = statistics.mean(BASELINE[r["lang"]] for r in done)
            lines += ["", f"Macro test WER of `ensemble-{which}` over {len(done)} languages: {test:.2f} "
                      f"(the baseline over the same: {base:.2f}; over all ten {BASELINE_MACRO:.2f})."]
    if records:
        lines += ["", "Commands of one ensemble (the others differ in language and members):", "", "```"]
        lines += records[0]["commands"] + ["```"]
    write_results(RESULTS / results_name, {"baseline": BASELINE, "runs": records}, "\n".join(lines), threads=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report"])
    parser.add_argument("--work", nargs="+", default=[str(ROOT / "runs" / "g2p")],
                        help="work folders of g2p_sigmorphon.py whose runs join (the first one's data is decoded)")
    parser.add_argument("--langs", nargs="+", default=LANGS)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--results", default="g2p_ensemble", help="name of the tables in benchmarks/results/")
    args = parser.parse_args(argv)
    works = [Path(w).resolve() for w in args.work]
    if args.action == "run":
        for lang in args.langs:
            for which in args.sets:
                if (works[0] / "ensembles" / f"{lang}-{which}.json").is_file():
                    continue
                runs = members(works, lang, which)
                if len(runs) < 2:
                    print(f"{lang} {which}: {len(runs)} run(s) with a checkpoint — skipped", flush=True)
                    continue
                print(f"{time.strftime('%H:%M:%S')} {lang} ensemble-{which}: {describe(runs)}", flush=True)
                record = do_ensemble(works, lang, which, runs)
                print(f"  dev WER {record['dev_wer']:.2f}, test WER {record['test_wer']:.2f}", flush=True)
                report(works[0], args.results)
    report(works[0], args.results)


if __name__ == "__main__":
    main()

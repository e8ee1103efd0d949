"""Grapheme-to-phoneme conversion on SIGMORPHON 2021 task 1, medium subtask (issue 23).

Protocol: every language of ``--langs`` (default the ten medium ones) is prepared with ``varattn prepare
sigmorphon-g2p`` and trained with ``configs/g2p/rnn.yaml model.mode=MODE`` for every mode of ``--modes`` (default soft,
marginal, hard-enum, vae-enum), seed 1. Each run's best checkpoint (the mode's validation perplexity)
is decoded with beam 5 on dev and on test (``varattn evaluate``): modes are compared on dev (macro dev
WER over the languages every mode finished); test is reported, never used to choose. ``--seeds 2 3`` for
the two modes best on dev completes three seeds for them (``best2`` selects them from the results so far).

Each finished run writes ``WORK/results/LANG-MODE-sSEED.json`` (scores, wall times, the commands, the
commit and the machine) and the tables ``benchmarks/results/g2p_sigmorphon.{md,json}`` are rewritten
from every finished run, so a stop loses at most the run in progress. Runs already finished are skipped;
one in progress when stopped is started again.

    python benchmarks/g2p_sigmorphon.py run --langs fre --modes soft marginal      # what was measured first
    python benchmarks/g2p_sigmorphon.py run                                         # the whole first stage
    python benchmarks/g2p_sigmorphon.py run --modes best2 --seeds 2 3               # three seeds for the two best
    python benchmarks/g2p_sigmorphon.py report                                      # the tables only
    python benchmarks/g2p_sigmorphon.py align                                       # prior vs posterior links
    python benchmarks/g2p_sigmorphon.py best                                        # per language, best on dev

``report`` also writes marginal − soft paired by seed (mean ± sd over seeds, per language and macro).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

import harness
from harness import RESULTS, ROOT, SHARED, commit, fmt, machine, rel, table, write_json, write_results
from workloads import BASELINE, BASELINE_MACRO, LANGS

MODES = ["soft", "marginal", "hard-enum", "vae-enum"]


def varattn(args: list[str], log: Path) -> float:
    """Run ``python -m varattn ARGS`` from the project root on one thread, appending its output to ``log``;
    its wall seconds."""
    try:
        return harness.varattn(*args, log=log, cwd=ROOT)
    except harness.Failed as failed:
        raise SystemExit(str(failed)) from None


def prepare_command(shared: Path, lang: str, data: Path, normalization: str, split_marks: bool = False) -> list[str]:
    return ["prepare", "sigmorphon-g2p", "--from", rel(shared), "--lang", lang, "--out", rel(data), "--force",
            "--normalization", normalization, *(["--split-marks"] if split_marks else [])]


def prepare(work: Path, shared: Path, lang: str, normalization: str, split_marks: bool = False) -> Path:
    data = work / "data" / lang
    if not (data / "meta.json").is_file():
        (work / "logs").mkdir(parents=True, exist_ok=True)
        varattn(prepare_command(shared, lang, data, normalization, split_marks), work / "logs" / f"prepare-{lang}.log")
    return data


def job_name(lang: str, mode: str, seed: int) -> str:
    return f"{lang}-{mode}-s{seed}"


def do_job(work: Path, shared: Path, lang: str, mode: str, seed: int, overrides: list[str],
           normalization: str = "nfc", split_marks: bool = False) -> dict:
    """Prepare, train and evaluate one run; its record (also written to WORK/results)."""
    name = job_name(lang, mode, seed)
    data = prepare(work, shared, lang, normalization, split_marks)
    run_dir = work / "runs" / name
    log = work / "logs" / f"{name}.log"
    if log.exists():
        log.unlink()
    train = ["train", "configs/g2p/rnn.yaml", f"model.mode={mode}", "--out", rel(run_dir), f"data.dir={rel(data)}",
             f"train.seed={seed}", *overrides]
    if (run_dir / "config.yaml").is_file():
        train.insert(1, "--resume")
    load_before = os.getloadavg()[0]
    train_seconds = varattn(train, log)
    load_after = os.getloadavg()[0]
    scores = {}
    eval_seconds = {}
    for split in ("valid", "test"):
        out = run_dir / f"eval-{split}.json"
        evaluate = ["evaluate", rel(run_dir), "--data", rel(data), "--split", split, "--beam", "5", "--kmax",
                    "--json", rel(out), "--device", "cpu"]
        eval_seconds[split] = varattn(evaluate, log)
        scores[split] = json.loads(out.read_text(encoding="utf-8"))
        if split == "valid":
            evaluate_valid = evaluate
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    record = {"lang": lang, "mode": mode, "seed": seed, "overrides": overrides, "normalization": normalization,
              "split_marks": split_marks,
              "dev_wer": scores["valid"]["wer"], "dev_per": scores["valid"]["per"],
              "test_wer": scores["test"]["wer"], "test_per": scores["test"]["per"],
              "test_ppl": scores["test"]["ppl"], "test_entropy": scores["test"]["entropy"],
              "test_kl": scores["test"].get("kl"), "epochs": len(history),
              "best_epoch": min(history, key=lambda h: h.get("elbo_ppl", h["ppl"]))["epoch"] if history else None,
              "train_seconds": round(train_seconds, 1), "load_average": [round(load_before, 2), round(load_after, 2)], "eval_seconds": {k: round(v, 1) for k, v in eval_seconds.items()},
              "commands": ["varattn " + " ".join(prepare_command(shared, lang, data, normalization, split_marks)),
                           "varattn " + " ".join(train), "varattn " + " ".join(evaluate_valid),
                           "varattn " + " ".join(evaluate_valid).replace("--split valid", "--split test")
                           .replace("eval-valid", "eval-test")],
              "commit": commit(), "machine": machine(threads=1), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    # whole or not at all: a job killed mid-write leaves no half file for load_results to trip on
    write_json(work / "results" / f"{name}.json", record)
    return record


def load_results(work: Path) -> list[dict]:
    folder = work / "results"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def dev_ranking(results: list[dict]) -> list[tuple[str, float, int]]:
    """(mode, macro dev WER of seed 1, languages) over the languages every ranked mode finished, best first;
    ranked are the modes that finished the most languages (a mode run on a few languages only is left out
    rather than narrowing everyone's comparison to those)."""
    seed1 = [r for r in results if r["seed"] == 1]
    coverage = {m: len({r["lang"] for r in seed1 if r["mode"] == m}) for m in {r["mode"] for r in seed1}}
    modes = sorted(m for m, n in coverage.items() if n == max(coverage.values()))
    langs = set.intersection(*[{r["lang"] for r in seed1 if r["mode"] == m} for m in modes]) if modes else set()
    ranking = []
    for mode in modes:
        values = [r["dev_wer"] for r in seed1 if r["mode"] == mode and r["lang"] in langs]
        if values:
            ranking.append((mode, statistics.mean(values), len(values)))
    return sorted(ranking, key=lambda item: item[1])


def paired_difference(results: list[dict], base: str = "soft", other: str = "marginal") -> dict:
    """``other`` − ``base`` in WER points, paired by language and seed (the seeds both modes finished):
    per language the mean and sd over its seeds, and a macro over the languages that share the most
    paired seeds (per seed the mean difference over those languages; then mean and sd over the seeds)."""
    by = {(r["lang"], r["mode"], r["seed"]): r for r in results}
    langs = {}
    for lang in sorted({r["lang"] for r in results}, key=lambda l: (LANGS.index(l) if l in LANGS else len(LANGS), l)):
        seeds = sorted(s for (l, m, s) in by if l == lang and m == base and (lang, other, s) in by)
        if not seeds:
            continue
        row = {"seeds": seeds}
        for split in ("test", "dev"):
            diffs = [by[(lang, other, s)][f"{split}_wer"] - by[(lang, base, s)][f"{split}_wer"] for s in seeds]
            row[split] = diffs
            for mode in (base, other):
                row[f"{split}_{mode}"] = [by[(lang, mode, s)][f"{split}_wer"] for s in seeds]
        langs[lang] = row
    macro = None
    if langs:
        most = max(len(r["seeds"]) for r in langs.values())
        seeds = next(r["seeds"] for r in langs.values() if len(r["seeds"]) == most)
        shared = [l for l, r in langs.items() if r["seeds"] == seeds]
        macro = {"langs": shared, "seeds": seeds,
                 **{split: [statistics.mean(langs[l][split][i] for l in shared) for i in range(len(seeds))]
                    for split in ("test", "dev")}}
    return {"base": base, "other": other, "langs": langs, "macro": macro}


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):+.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")


def difference_lines(difference: dict) -> list[str]:
    """The table of :func:`paired_difference`, only where some language has two paired seeds or more."""
    langs = difference["langs"]
    if not any(len(r["seeds"]) > 1 for r in langs.values()):
        return []
    base, other = difference["base"], difference["other"]
    plain = lambda values: f"{statistics.mean(values):.2f}" + (
        f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")
    rows = [[lang, ",".join(map(str, r["seeds"])), plain(r[f"test_{base}"]), plain(r[f"test_{other}"]),
             mean_sd(r["test"]), mean_sd(r["dev"]), " ".join(f"{d:+.1f}" for d in r["test"])]
            for lang, r in langs.items()]
    macro = difference["macro"]
    if macro and len(macro["langs"]) > 1:
        rows.append([f"**macro over {len(macro['langs'])}** ({' '.join(macro['langs'])})",
                     ",".join(map(str, macro["seeds"])), "", "", mean_sd(macro["test"]), mean_sd(macro["dev"]),
                     " ".join(f"{d:+.2f}" for d in macro["test"])])
    return ["", f"`{other}` − `{base}` at equal size and budget, paired by seed (WER points; negative: "
            f"`{other}` better): mean ± sd over the seeds both modes finished. The macro row takes, per seed, the "
            "mean difference over the languages that have all those seeds, then mean ± sd over the seeds.", "",
            table(["language", "seeds", f"{base} test WER", f"{other} test WER", "test difference",
                   "dev difference", "test difference per seed"], rows, align="l" * 7)]


def report(work: Path, note: str = "", results_name: str = "g2p_sigmorphon") -> None:
    """Rewrite benchmarks/results/g2p_sigmorphon.{md,json} from every finished run."""
    results = load_results(work)
    by = {}
    for r in results:
        by.setdefault((r["lang"], r["mode"]), []).append(r)
    modes = [m for m in MODES if any(k[1] == m for k in by)] + sorted({k[1] for k in by} - set(MODES))
    lines = ["# G2P: SIGMORPHON 2021 task 1, medium subtask (issue 23)", "",
             "Written by `benchmarks/g2p_sigmorphon.py` from every finished run; each row carries its commit, "
             "each run's record (`WORK/results/*.json`, copied into `g2p_sigmorphon.json`) its exact commands "
             "and machine; one thread per run.", ""]
    if note:
        lines += [note, ""]
    lines += ["Test WER (%) of the best checkpoint (the mode's dev perplexity), beam 5; dev WER in brackets; "
              "mean ± sd and ×N where N seeds finished. The baseline is the shared "
              "task's (ensembled neural transducer, test WER).", ""]
    rows = []
    langs = [l for l in LANGS if any(k[0] == l for k in by)] + sorted({k[0] for k in by} - set(LANGS))
    for lang in langs:
        cells = []
        for mode in modes:
            runs = by.get((lang, mode), [])
            if not runs:
                cells.append("")
                continue
            tests = [r["test_wer"] for r in runs]
            devs = [r["dev_wer"] for r in runs]
            spread = f" ± {statistics.stdev(tests):.2f}" if len(tests) > 1 else ""
            cells.append(f"{statistics.mean(tests):.2f}{spread} ({statistics.mean(devs):.2f})"
                         + (f" ×{len(runs)}" if len(runs) > 1 else ""))
        rows.append([lang, fmt(BASELINE.get(lang)), *cells])
    macro_cells = []
    for mode in modes:
        done = [l for l in langs if (l, mode) in by]
        if not done:
            macro_cells.append("")
            continue
        test = statistics.mean(statistics.mean(r["test_wer"] for r in by[(l, mode)]) for l in done)
        base = statistics.mean(BASELINE[l] for l in done if l in BASELINE)
        macro_cells.append(f"{test:.2f} over {len(done)} (baseline {base:.2f})")
    rows.append(["**macro**", f"{BASELINE_MACRO:.2f} over 10", *macro_cells])
    lines += [table(["language", "baseline", *modes], rows, align="l" * (2 + len(modes)))]
    difference = paired_difference(results)
    lines += difference_lines(difference)
    lines += ["", "Every run (one line each, in the order they finished):", "",
              table(["run", "dev WER", "dev PER", "test WER", "test PER", "test PPL", "prior entropy", "KL",
                     "epochs (best)", "train s", "load (1 min, start/end)", "eval s (dev+test)", "commit"],
                    [[job_name(r["lang"], r["mode"], r["seed"]), f"{r['dev_wer']:.2f}", f"{r['dev_per']:.2f}",
                      f"{r['test_wer']:.2f}", f"{r['test_per']:.2f}", fmt(r["test_ppl"], ".3f"),
                      fmt(r["test_entropy"], ".3f"), fmt(r["test_kl"], ".3f"), f"{r['epochs']} ({r['best_epoch']})",
                      f"{r['train_seconds']:.0f}", "/".join(map(str, r.get("load_average", []))) or "–",
                      f"{sum(r['eval_seconds'].values()):.0f}", r["commit"]]
                     for r in sorted(results, key=lambda r: r["finished"])], align="l" * 13)]
    ranking = dev_ranking(results)
    if ranking:
        lines += ["", "Modes by macro dev WER (seed 1, over the languages all of them finished): "
                  + ", ".join(f"{m} {v:.2f} ({n} languages)" for m, v, n in ranking) + "."]
    if results:
        lines += ["", "Commands of one run (the others differ in language, mode and seed):", "", "```"]
        lines += results[0]["commands"] + ["```"]
    write_results(RESULTS / results_name, {"baseline": BASELINE, "baseline_macro": BASELINE_MACRO,
                                               "ranking": ranking, "marginal_minus_soft": difference,
                                               "runs": results}, "\n".join(lines), threads=1)


def result_tables() -> list[str]:
    """The tables of finished runs in benchmarks/results: single runs (``g2p_sigmorphon*``) before
    ensembles (``g2p_ensemble*``), each group sorted by name."""
    return [path.stem for prefix in ("g2p_sigmorphon", "g2p_ensemble")
            for path in sorted(RESULTS.glob(f"{prefix}*.json"))]


def best_on_dev(names: list[str], out: str = "g2p_best") -> None:
    """Per language, the configuration (results table, mode) with the lowest development WER, mean over
    its seeds, among the runs of ``benchmarks/results/NAME.json`` for every NAME; its test WER is
    reported, never used to choose (a tie goes to the first table named, then the mode's name). An
    ensemble (a run with ``members``, from g2p_ensemble.py) competes as one configuration. Writes
    ``benchmarks/results/OUT.{md,json}``."""
    missing = [name for name in names if not (RESULTS / f"{name}.json").is_file()]
    if missing:
        print(f"best: no table {', '.join(missing)} yet — left out", flush=True)
        names = [name for name in names if name not in missing]
    configs: dict[tuple[str, str, str], list[dict]] = {}
    for name in names:
        for r in json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))["runs"]:
            configs.setdefault((r["lang"], name, r["mode"]), []).append(r)
    chosen = {}
    for lang in [l for l in LANGS if any(k[0] == l for k in configs)]:
        candidates = [(statistics.mean(r["dev_wer"] for r in runs), names.index(name), mode, name, runs)
                      for (l, name, mode), runs in configs.items() if l == lang]
        dev, _, mode, name, runs = min(candidates)
        seeds = [f"{len(r['members'])} runs" for r in runs] if "members" in runs[0] else sorted(r["seed"] for r in runs)
        chosen[lang] = {"table": name, "mode": mode, "seeds": seeds, "dev_wer": dev,
                        "test_wer": statistics.mean(r["test_wer"] for r in runs), "baseline": BASELINE[lang],
                        "candidates": len(candidates)}
    rows = [[lang, c["table"], c["mode"], ",".join(map(str, c["seeds"])), f"{c['dev_wer']:.2f}",
             f"{c['test_wer']:.2f}", f"{c['baseline']:.2f}", f"{c['test_wer'] - c['baseline']:+.2f}", c["candidates"]]
            for lang, c in chosen.items()]
    macro = {"test_wer": statistics.mean(c["test_wer"] for c in chosen.values()),
             "dev_wer": statistics.mean(c["dev_wer"] for c in chosen.values()),
             "baseline": statistics.mean(c["baseline"] for c in chosen.values()), "langs": len(chosen)}
    rows.append([f"**macro over {len(chosen)}**", "", "", "", f"{macro['dev_wer']:.2f}", f"{macro['test_wer']:.2f}",
                 f"{macro['baseline']:.2f}", f"{macro['test_wer'] - macro['baseline']:+.2f}", ""])
    lines = ["# G2P: the best varattn configuration per language, chosen on dev (issue 23)", "",
             "Written by `python benchmarks/g2p_sigmorphon.py best --tables " + " ".join(names) + "` from those "
             "tables' runs (each run's commands and commit are there). Per language, the configuration (table, "
             "mode) with the lowest development WER, mean over its seeds, is chosen; its test WER (mean over "
             "the same seeds) is reported and was not used to choose. Baseline: the shared task's test WER.", "",
             table(["language", "table", "mode", "seeds", "dev WER", "test WER", "baseline", "test − baseline",
                    "candidates"], rows, align="l" * 9)]
    write_results(RESULTS / out, {"tables": names, "chosen": chosen, "macro": macro}, "\n".join(lines), threads=1)


def m2m_links(corpus: Path) -> list[tuple[list[str], list[str], set[tuple[int, int]]]]:
    """Phonetisaurus' aligned corpus -> per entry (letters, phones, links (letter i, phone j)): every
    letter of a chunk ``l|l}p|p`` is linked to every phone of it; ``_`` is the empty side."""
    entries = []
    for line in corpus.read_text(encoding="utf-8").splitlines():
        letters, phones, links = [], [], set()
        for chunk in line.split():
            left, _, right = chunk.partition("}")
            gs = [] if left == "_" else left.split("|")
            ps = [] if right == "_" else right.split("|")
            links |= {(len(letters) + a, len(phones) + b) for a in range(len(gs)) for b in range(len(ps))}
            letters += gs
            phones += ps
        entries.append((letters, phones, links))
    return entries


def m2m_agreement(matrices, entries, src_tokens, tgt_tokens) -> tuple[float, int]:
    """The share of phones whose argmax letter the EM aligner links to it, over the words both tokenised
    alike; and that number of words."""
    hits = total = words = 0
    for matrix, (letters, phones, links), src, tgt in zip(matrices, entries, src_tokens, tgt_tokens):
        if letters != list(src) or phones != list(tgt):
            continue
        best = matrix[:-1].argmax(-1)
        hits += sum((int(i), j) in links for j, i in enumerate(best))
        total += len(best)
        words += 1
    return (hits / total if total else float("nan")), words


def alignments(work: Path, limit: int, peer: Path) -> None:
    """For every finished latent run: how monotone the prior's argmax links, the exact posterior's and
    (vae-*) q's are on the first ``limit`` test words; writes benchmarks/results/g2p_alignments.{md,json}."""
    import torch

    from varattn.analysis.align import align_split
    from varattn.tasks.transduction.align import exact_posteriors, monotonicity
    from varattn.data.lexicon import load_transduction
    from varattn.training.runs import load_run

    torch.set_num_threads(1)
    rows = []
    for record in load_results(work):
        if record["mode"] == "soft":
            names = ["attention"]
        else:
            names = ["prior", "exact-posterior"] + (["posterior"] if record["mode"].startswith("vae") else [])
        name = job_name(record["lang"], record["mode"], record["seed"])
        if not (work / "runs" / name / "config.yaml").is_file():  # a record restored without its run
            print(f"{name}: no run folder under {work / 'runs'}, skipped", flush=True)
            continue
        run = load_run(work / "runs" / name, torch.device("cpu"))
        data = load_transduction(work / "data" / record["lang"])
        pairs = align_split(run, data, "test", limit=limit)
        matrices = {k: [p.matrices[k] for p in pairs] for k in names if k in pairs[0].matrices}
        if "exact-posterior" in names:
            split = data.split("test")
            matrices["exact-posterior"] = exact_posteriors(run, [split.src(i) for i in range(len(pairs))],
                                                           [split.tgt(i) for i in range(len(pairs))])
        first = next(iter(matrices.values()))
        corpus = peer / f"{record['lang']}.corpus"
        m2m = {}
        if corpus.is_file():  # agreement with Phonetisaurus' EM alignment, on the first training words
            train_pairs = align_split(run, data, "train", limit=limit)
            train = data.split("train")
            on_train = {k: [p.matrices[k] for p in train_pairs] for k in matrices if k in train_pairs[0].matrices}
            if "exact-posterior" in matrices:
                on_train["exact-posterior"] = exact_posteriors(run, [train.src(i) for i in range(len(train_pairs))],
                                                               [train.tgt(i) for i in range(len(train_pairs))])
            entries = m2m_links(corpus)[:limit]
            for k, found in on_train.items():
                m2m[k] = m2m_agreement(found, entries, [p.src for p in train_pairs], [p.tgt[:-1] for p in train_pairs])
        for k, found in matrices.items():
            entropy = float(np.mean([-(m[:-1] * np.log(np.clip(m[:-1], 1e-30, 1))).sum(-1).mean() for m in found]))
            same = [float((m[:-1].argmax(-1) == f[:-1].argmax(-1)).mean()) for m, f in zip(found, first)]
            rows.append({"run": name, "distribution": k, **monotonicity(found), "entropy": entropy,
                         "same_as_first": float(np.mean(same)), "m2m_agreement": m2m.get(k, (None, 0))[0],
                         "m2m_words": m2m.get(k, (None, 0))[1]})
    lines = ["# G2P alignments: prior, exact posterior and q (issue 23)", "",
             f"From the runs of `g2p_sigmorphon.md`: the first {limit} test words of each run, teacher-forced on "
             "the gold pronunciation. No gold letter-phone links exist for these data; letter-to-sound "
             "alignments of alphabetic scripts are close to monotone, so the share of monotone steps and "
             "words and the share of letters linked at all are the measures; entropy in nats per phone.", "",
             "Same argmax: the share of phones whose argmax letter is the one of the run's first "
             "distribution (the prior, or a soft model's attention). EM agreement: on the first training words, "
             "the share of phones whose argmax letter Phonetisaurus' EM many-to-many alignment "
             "(`benchmarks/g2p_peer.py`, `--corpus`) links to that phone (words in brackets).", "",
             table(["run", "distribution", "monotone steps", "monotone words", "letters covered", "entropy",
                    "same argmax", "EM agreement"],
                   [[r["run"], r["distribution"], f"{r['monotone_steps']:.3f}", f"{r['monotone_words']:.3f}",
                     f"{r['covered']:.3f}", f"{r['entropy']:.3f}", f"{r['same_as_first']:.3f}",
                     f"{r['m2m_agreement']:.3f} ({r['m2m_words']})" if r["m2m_agreement"] is not None else "–"]
                    for r in rows], align="l" * 8)]
    write_results(RESULTS / "g2p_alignments", {"limit": limit, "rows": rows}, "\n".join(lines), threads=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["run", "report", "align", "best"])
    parser.add_argument("--tables", nargs="+", default=None,
                        help="best: the results tables whose runs compete (ties go to the first named); by default "
                             "every g2p_sigmorphon* table, then every g2p_ensemble* table, each group by name")
    parser.add_argument("--limit", type=int, default=1000, help="align: test (and training) words per run")
    parser.add_argument("--peer", default=str(ROOT / "runs" / "g2p-peer"), help="align: g2p_peer.py's work folder")
    parser.add_argument("--work", default=str(ROOT / "runs" / "g2p"))
    parser.add_argument("--shared", default=str(SHARED / "sigmorphon2021-g2p" / "medium"))
    parser.add_argument("--langs", nargs="+", default=LANGS)
    parser.add_argument("--modes", nargs="+", default=MODES, help="modes, or best2: the two best on dev so far")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--by", choices=["lang", "mode"], default="lang",
                        help="order: every mode of a language before the next language (lang), or the reverse")
    parser.add_argument("--split-marks", action="store_true",
                        help="prepare with --split-marks (tone, length and nasality marks as tokens of their own)")
    parser.add_argument("--normalization", default="nfc", choices=["nfc", "nfd"],
                        help="Unicode normalisation of the words (nfd splits Hangul syllables into jamo and "
                             "letters from their diacritics); one per work folder")
    parser.add_argument("--results", default="g2p_sigmorphon",
                        help="name of the tables in benchmarks/results/ (another work folder: another name)")
    parser.add_argument("--note", default="", help="report: a line printed under the machine")
    parser.add_argument("overrides", nargs="*", help="section.field=value for every training run")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    if args.action == "report":
        report(work, args.note, args.results)
        return
    if args.action == "best":
        best_on_dev(args.tables or result_tables())
        return
    if args.action == "align":
        alignments(work, args.limit, Path(args.peer))
        return
    modes = args.modes
    if modes == ["best2"]:
        modes = [m for m, _, _ in dev_ranking(load_results(work))[:2]]
        if len(modes) < 2:
            raise SystemExit("best2: fewer than two modes have finished runs — run the first stage first")
    jobs = [(l, m, s) for s in args.seeds for l in args.langs for m in modes] if args.by == "lang" else \
        [(l, m, s) for s in args.seeds for m in modes for l in args.langs]
    for lang, mode, seed in jobs:
        if (work / "results" / f"{job_name(lang, mode, seed)}.json").is_file():
            continue
        print(f"{time.strftime('%H:%M:%S')} {job_name(lang, mode, seed)}", flush=True)
        record = do_job(work, Path(args.shared), lang, mode, seed, args.overrides, args.normalization, args.split_marks)
        print(f"  dev WER {record['dev_wer']:.2f}, test WER {record['test_wer']:.2f}, train {record['train_seconds']:.0f} s",
              flush=True)
        report(work, args.note, args.results)


if __name__ == "__main__":
    main()

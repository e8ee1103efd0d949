"""CPU-scale comparison of the paper's modes on one corpus (issue 4 item 6; made fit for any corpus and fair
between modes in issue 16).

Prepares the corpus once (``varattn prepare CORPUS``; by default Multi30k De-En, pairs <= 15 tokens, a
3k-merge joint BPE, evaluation splits filtered too), trains one small model per mode for the same number
of epochs with ``varattn train`` from the corpus recipe of each mode (``configs/CORPUS/ARCH.yaml`` with ``model.mode=MODE``,
so every mode decodes with the recipe's beam, α and eos_norm), records per-epoch validation scores (exact
PPL under the prior, ELBO PPL with q, KL, prior entropy) and wall time, then evaluates each mode's best
checkpoint on the test split with ``varattn evaluate`` (test PPL and BLEU of beam search over the exact
marginal, unless ``--decode-kmax``). Modes may run side by side (``--parallel``), each with ``--threads``
intra-op threads; with ``--parallel 1`` the training progress bar shows on the terminal, otherwise it is in
``WORK/runs/MODE.log``.

A prepared folder is reused only when its ``meta.json`` records the same corpus and settings (languages,
BPE merges, length limit, filtering, source folder); otherwise the script stops and says what differs.

    python benchmarks/multi30k_modes.py --epochs 8 --parallel 2 --threads 1
    python benchmarks/multi30k_modes.py --src-lang en --tgt-lang de --work runs/bench-m30k-ende
    python benchmarks/multi30k_modes.py --arch transformer --modes soft vae-enum

Writes ``benchmarks/results/multi30k_modes.{json,md}`` (``--results`` to change) as each mode finishes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, command_line, fmt, table, write_results

# the RNN's CPU-scale sizes (the Transformer takes its recipe's sizes)
MODEL = {"emb_size": 128, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128, "dec_layers": 1,
         "attn_size": 128, "inf_hidden": 64, "inf_layers": 1, "dropout": 0.2, "enum_block": 100000}
TRAIN = {"lr": 0.001, "decay_from_epoch": 4, "seed": 1, "device": "cpu"}
DATA = {"max_tokens": 600, "eval_max_tokens": 6000}  # ~23 pairs a batch: ~570 updates a Multi30k epoch


def wanted_settings(args) -> dict:
    """The settings of ``varattn prepare`` this comparison needs, as ``meta.json`` records them."""
    wanted = {"from_dir": str(Path(args.shared).resolve()), "bpe_merges": args.bpe_merges, "max_len": args.max_len,
              "filter_eval": args.filter_eval}
    if args.src_lang:
        wanted["src_lang"] = args.src_lang
    if args.tgt_lang:
        wanted["tgt_lang"] = args.tgt_lang
    return wanted


def mismatches(meta: dict, corpus: str, wanted: dict) -> list[str]:
    """What differs between a prepared folder's ``meta.json`` and the wanted corpus and settings."""
    found = [] if meta.get("source") == corpus else [f"corpus {meta.get('source')!r} (wanted {corpus!r})"]
    settings = meta.get("settings", {})
    for key, value in wanted.items():
        have = settings.get(key)
        if key == "from_dir" and have is not None:
            have = str(Path(have).resolve())
        if have != value:
            found.append(f"{key} {have!r} (wanted {value!r})")
    return found


def prepare(args, data_dir: Path) -> dict:
    wanted = wanted_settings(args)
    meta_file = data_dir / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        differ = mismatches(meta, args.corpus, wanted)
        if differ:
            raise SystemExit(f"{data_dir} was prepared with other settings: {'; '.join(differ)} — "
                             "choose another --work, or delete the folder to prepare it again")
        return meta
    command = [sys.executable, "-m", "varattn", "prepare", args.corpus, "--from", str(args.shared),
               "--out", str(data_dir), "--bpe-merges", str(args.bpe_merges)]
    if args.max_len:
        command += ["--max-len", str(args.max_len)]
    if args.filter_eval:
        command.append("--filter-eval")
    for flag, value in (("--src-lang", args.src_lang), ("--tgt-lang", args.tgt_lang)):
        if value:
            command += [flag, value]
    print(shlex.join(command), flush=True)
    harness.run(command, threads=args.threads, console=True)
    return json.loads(meta_file.read_text(encoding="utf-8"))


def recipe(args, mode: str) -> Path:
    """The corpus recipe of the architecture (the mode is an override)."""
    path = ROOT / "configs" / args.corpus / f"{args.arch}.yaml"
    if not path.is_file():
        raise SystemExit(f"{path}: no recipe for --arch {args.arch} on {args.corpus}")
    return path


def decoding_flags(args) -> list[str]:
    flags = []
    for flag, value in (("--beam", args.beam), ("--alpha", args.alpha), ("--eos-norm", args.eos_norm),
                        ("--decode-kmax", args.decode_kmax)):
        if value is not None:
            flags += [flag, str(value)]
    return flags


def train(args, mode: str, data_dir: Path, runs: Path) -> dict:
    run_dir = runs / mode
    overrides = [f"data.dir={data_dir}", f"model.mode={mode}", f"model.arch={args.arch}",
                 f"train.epochs={args.epochs}", f"train.progress={'true' if args.parallel == 1 else 'false'}"]
    if args.arch == "rnn":
        overrides += [f"model.{k}={v}" for k, v in MODEL.items()]
    overrides += [f"train.{k}={v}" for k, v in {**TRAIN, "lr": args.lr, "seed": args.seed}.items()]
    overrides += [f"data.{k}={v}" for k, v in DATA.items()]
    resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
    log = runs / f"{mode}.log"
    options = {"log": log, "threads": args.threads, "console": args.parallel == 1}  # a progress bar on one
    print(f"[{mode}] training ({'resuming' if resume else 'from scratch'}; log {log})", flush=True)
    seconds = harness.varattn("train", recipe(args, mode), "--out", run_dir, *resume, *overrides, **options)
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    result = {"mode": mode, "seconds": seconds, "history": history}
    if not args.no_test:
        print(f"[{mode}] evaluating the best checkpoint on {args.test_split}...", flush=True)
        target = run_dir / f"{args.test_split}.json"
        harness.varattn("evaluate", run_dir, "--data", data_dir, "--split", args.test_split, "--device", "cpu",
                        "--json", target, *decoding_flags(args), *(["--no-bleu"] if args.no_bleu else []), **options)
        result["test"] = json.loads(target.read_text(encoding="utf-8"))
    return result


def collect(run_dir: Path, mode: str, epochs: int, split: str) -> dict | None:
    """A finished or running run's first ``epochs`` validations; its wall time from the files' times
    (config.yaml written at the start, one checkpoint_last per epoch), scaled to those epochs."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return None
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    history = [json.loads(line) for line in lines][:epochs]
    seconds = (run_dir / "checkpoint_last.json").stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime
    result = {"mode": mode, "seconds": seconds * len(history) / max(len(lines), 1), "history": history}
    if (run_dir / f"{split}.json").is_file():
        result["test"] = json.loads((run_dir / f"{split}.json").read_text())
    return result


def modes_table(results: list[dict]) -> str:
    rows = []
    for result in results:
        last = result["history"][-1]
        metric = "elbo_ppl" if result["mode"].startswith("vae-") else "ppl"
        best = min(result["history"], key=lambda h: h.get(metric, h["ppl"]))
        epochs = len(result["history"])
        test = result.get("test", {})
        rows.append([result["mode"], epochs, f"{last['ppl']:.2f}", fmt(last.get("elbo_ppl"), ".2f"),
                     fmt(last.get("kl"), ".3f"), f"{last['entropy']:.2f}", best["epoch"], fmt(test.get("ppl"), ".2f"),
                     fmt(test.get("bleu"), ".2f"), f"{result['seconds'] / 60:.1f}", f"{result['seconds'] / epochs:.0f}"])
    return table(["mode", "epochs", "exact PPL", "ELBO PPL", "KL", "prior entropy", "best epoch", "test PPL",
                  "test BLEU", "wall (min)", "s/epoch"], rows)


def per_epoch(results: list[dict]) -> str:
    def cell(r: dict, e: int) -> str:
        if e >= len(r["history"]):
            return ""
        h = r["history"][e]
        return f"{h['ppl']:.2f}" + (f" / {h['elbo_ppl']:.2f}" if "elbo_ppl" in h else "")

    epochs = max(len(r["history"]) for r in results)
    return table(["epoch", *(r["mode"] for r in results)],
                 [[e + 1, *(cell(r, e) for r in results)] for e in range(epochs)], align="r" * (1 + len(results)))


def decoding_note(results: list[dict]) -> str:
    settings = {json.dumps(r["test"].get("decoding"), sort_keys=True) for r in results
                if r.get("test", {}).get("decoding")}
    if not settings:
        return ""
    shown = "; ".join(", ".join(f"{k} {v}" for k, v in json.loads(s).items()
                                if k in ("beam", "alpha", "eos_norm", "kmax")) for s in sorted(settings))
    return f"Test BLEU: best checkpoint, `varattn evaluate` with {shown} (kmax 0 = the exact marginal).\n\n"


def write(out: Path, args, meta: dict, results: list[dict]) -> None:
    record = {"corpus": args.corpus, "arch": args.arch, "parallel": args.parallel,
              "threads": args.threads, "model": MODEL if args.arch == "rnn" else f"configs/{args.corpus} recipe",
              "train": {**TRAIN, "lr": args.lr, "seed": args.seed}, "data": DATA, "prepared": meta.get("settings"),
              "pairs": {k: v["pairs"] for k, v in meta["splits"].items()}, "results": results}
    settings = meta.get("settings", {})
    text = (f"Validation ({args.corpus} {settings.get('src_lang')}→{settings.get('tgt_lang')} valid, "
            f"{meta['splits']['valid']['pairs']} pairs; pairs <= {settings.get('max_len')} BPE tokens), after "
            f"{args.epochs} epochs; arch {args.arch}\n\n{modes_table(results)}\n\n"
            f"{decoding_note(results)}Per epoch: exact PPL (/ ELBO PPL)\n\n{per_epoch(results)}\n")
    write_results(out, record, text, command=command_line(__file__, args.argv), threads=args.threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="multi30k", help="varattn prepare source with recipes in configs/CORPUS")
    parser.add_argument("--shared", default=str(SHARED / "multi30k"),
                        help="the corpus folder (varattn prepare --from)")
    parser.add_argument("--src-lang", default=None, help="source language (default: the corpus's)")
    parser.add_argument("--tgt-lang", default=None, help="target language (default: the corpus's)")
    parser.add_argument("--bpe-merges", type=int, default=3000)
    parser.add_argument("--max-len", type=int, default=15, help="longest pair kept (BPE tokens); 0 = all")
    parser.add_argument("--no-filter-eval", dest="filter_eval", action="store_false",
                        help="keep long pairs in the evaluation splits")
    parser.add_argument("--seed", type=int, default=TRAIN["seed"], help="train.seed of every run")
    parser.add_argument("--arch", default="rnn", help="model.arch (recipe configs/CORPUS/ARCH.yaml)")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-multi30k"))
    parser.add_argument("--modes", nargs="+", default=["soft", "vae-enum", "marginal", "vae-sample", "hard-enum"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=TRAIN["lr"])
    parser.add_argument("--parallel", type=int, default=1, help="modes trained side by side")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per training process")
    parser.add_argument("--test-split", default="test")
    parser.add_argument("--no-test", action="store_true", help="skip the test-split evaluation")
    parser.add_argument("--no-bleu", action="store_true", help="test PPL only, no decoding")
    g = parser.add_argument_group("decoding (default: each mode's recipe)")
    g.add_argument("--beam", type=int, default=None)
    g.add_argument("--alpha", type=float, default=None)
    g.add_argument("--eos-norm", type=float, default=None)
    g.add_argument("--decode-kmax", type=int, default=None, help="0 = the exact marginal")
    parser.add_argument("--results", default=str(RESULTS / "multi30k_modes"))
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs already in --work, cut at --epochs epochs")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    work = Path(args.work)
    if args.report_only:
        meta = json.loads((work / "data" / "meta.json").read_text())
        results = [collect(work / "runs" / mode, mode, args.epochs, args.test_split) for mode in args.modes]
        write(Path(args.results), args, meta, [r for r in results if r is not None])
        print(Path(args.results).with_suffix(".md").read_text())
        return
    for mode in args.modes:
        recipe(args, mode)  # every recipe exists before anything trains
    (work / "runs").mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    meta = prepare(args, data_dir)
    results: list[dict] = []

    def record(result: dict) -> None:  # rewrite the table as each mode finishes
        results.append(result)
        results.sort(key=lambda r: args.modes.index(r["mode"]))
        write(Path(args.results), args, meta, results)

    with ThreadPoolExecutor(args.parallel) as pool:
        futures = [pool.submit(train, args, mode, data_dir, work / "runs") for mode in args.modes]
        for mode, future in zip(args.modes, futures):
            try:
                record(future.result())
            except (subprocess.CalledProcessError, OSError) as error:  # the other modes still count
                print(f"[{mode}] failed: {error} (see {work / 'runs' / f'{mode}.log'})", flush=True)
    print(Path(args.results).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

"""CPU-scale comparison of the paper's modes on Multi30k De-En (issue 4, item 6).

Prepares Multi30k pairs of <= 15 tokens with a 3k-merge joint BPE (train and evaluation splits both
filtered), trains one small model per mode for the same number of epochs with ``varattn train``, and
records per-epoch validation scores (exact PPL under the prior, ELBO PPL with q, KL, prior entropy) and
wall time. Modes may run side by side (``--parallel``), each with ``--threads`` intra-op threads.

    python benchmarks/multi30k_modes.py --epochs 8 --parallel 2 --threads 1

Writes ``benchmarks/results/multi30k_modes.{json,md}`` (the table) next to this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = {"emb_size": 128, "enc_hidden": 64, "enc_layers": 1, "dec_hidden": 128, "dec_layers": 1,
         "attn_size": 128, "inf_hidden": 64, "inf_layers": 1, "dropout": 0.2, "enum_block": 100000}
TRAIN = {"lr": 0.001, "decay_from_epoch": 4, "seed": 1, "progress": "false", "device": "cpu"}
DATA = {"max_tokens": 600, "eval_max_tokens": 6000}  # ~23 pairs a batch: ~570 updates an epoch


def prepare(shared: Path, data_dir: Path) -> None:
    if (data_dir / "meta.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "varattn", "prepare", "multi30k", "--from", str(shared),
                    "--out", str(data_dir), "--bpe-merges", "3000", "--max-len", "15", "--filter-eval"],
                   check=True, stdout=subprocess.DEVNULL)


def train(mode: str, data_dir: Path, runs: Path, epochs: int, threads: int) -> dict:
    run_dir = runs / mode
    overrides = [f"data.dir={data_dir}", f"model.mode={mode}", f"train.epochs={epochs}"]
    overrides += [f"model.{k}={v}" for k, v in MODEL.items()]
    overrides += [f"train.{k}={v}" for k, v in TRAIN.items()]
    overrides += [f"data.{k}={v}" for k, v in DATA.items()]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "varattn", "train", str(ROOT / "configs" / "quickstart.yaml"),
                    "--out", str(run_dir), *resume, *overrides], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=open(runs / f"{mode}.log", "w"))
    seconds = time.perf_counter() - started
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"mode": mode, "seconds": seconds, "history": history}


def collect(run_dir: Path, mode: str, epochs: int) -> dict | None:
    """A finished or running run's first ``epochs`` validations; its wall time from the files' times
    (config.yaml written at the start, one checkpoint_last per epoch), scaled to those epochs."""
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return None
    history = [json.loads(line) for line in log.read_text().splitlines()][:epochs]
    seconds = (run_dir / "checkpoint_last.json").stat().st_mtime - (run_dir / "config.yaml").stat().st_mtime
    done = len([line for line in log.read_text().splitlines() if line.strip()])
    return {"mode": mode, "seconds": seconds * len(history) / max(done, 1), "history": history}


def table(results: list[dict]) -> str:
    lines = ["| mode | epochs | exact PPL | ELBO PPL | KL | prior entropy | best epoch | wall (min) | s/epoch |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for result in results:
        last = result["history"][-1]
        metric = "elbo_ppl" if result["mode"].startswith("vae-") else "ppl"
        best = min(result["history"], key=lambda h: h[metric])
        epochs = len(result["history"])
        lines.append(
            f"| {result['mode']} | {epochs} | {last['ppl']:.2f} | "
            f"{last.get('elbo_ppl', float('nan')):.2f} | {last.get('kl', float('nan')):.3f} | "
            f"{last['entropy']:.2f} | {best['epoch']} | {result['seconds'] / 60:.1f} | "
            f"{result['seconds'] / epochs:.0f} |")
    return "\n".join(lines)


def per_epoch(results: list[dict]) -> str:
    modes = [r["mode"] for r in results]
    lines = ["| epoch | " + " | ".join(modes) + " |", "| ---: |" + " ---: |" * len(modes)]
    epochs = max(len(r["history"]) for r in results)
    for e in range(epochs):
        cells = []
        for r in results:
            h = r["history"][e] if e < len(r["history"]) else None
            cells.append("" if h is None else f"{h['ppl']:.2f}" + (f" / {h['elbo_ppl']:.2f}" if "elbo_ppl" in h else ""))
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-multi30k"))
    parser.add_argument("--modes", nargs="+", default=["soft", "vae-enum", "marginal", "vae-sample", "hard-enum"])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=1, help="modes trained side by side")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per training process")
    parser.add_argument("--results", default=str(HERE / "results" / "multi30k_modes"))
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: tabulate the runs already in --work, cut at --epochs epochs")
    args = parser.parse_args()
    if args.report_only:
        meta = json.loads((Path(args.work) / "data" / "meta.json").read_text())
        results = [collect(Path(args.work) / "runs" / mode, mode, args.epochs) for mode in args.modes]
        write(Path(args.results), args, meta, [r for r in results if r is not None])
        print(Path(args.results).with_suffix(".md").read_text())
        return
    work = Path(args.work)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    prepare(Path(args.shared), data_dir)
    meta = json.loads((data_dir / "meta.json").read_text())
    results: list[dict] = []

    def record(result: dict) -> None:  # rewrite the table as each mode finishes
        results.append(result)
        results.sort(key=lambda r: args.modes.index(r["mode"]))
        write(Path(args.results), args, meta, results)

    with ThreadPoolExecutor(args.parallel) as pool:
        for mode in args.modes:
            pool.submit(train, mode, data_dir, work / "runs", args.epochs, args.threads).add_done_callback(
                lambda future: record(future.result()))
    print(Path(args.results).with_suffix(".md").read_text())


def write(out: Path, args, meta: dict, results: list[dict]) -> None:
    record = {"machine": machine(), "parallel": args.parallel, "threads": args.threads, "model": MODEL,
              "train": TRAIN, "data": DATA, "pairs": {k: v["pairs"] for k, v in meta["splits"].items()},
              "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    text = (f"Validation (Multi30k val, pairs <= 15 BPE tokens, {meta['splits']['valid']['pairs']} pairs), "
            f"after {args.epochs} epochs; machine: {record['machine']}\n\n{table(results)}\n\n"
            f"Per epoch: exact PPL (/ ELBO PPL)\n\n{per_epoch(results)}\n")
    out.with_suffix(".md").write_text(text)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()

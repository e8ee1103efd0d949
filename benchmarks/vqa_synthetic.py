"""The six VQA modes on the synthetic VQA corpus (issue 8): the README's results table.

Prepares the synthetic corpus (``varattn prepare vqa-synthetic``, 10,000 training questions, 64-d region
features, 4-12 regions per image), trains one small model per mode with ``configs/vqa/synthetic.yaml``
for the same number of epochs (``varattn train``), and evaluates each run's best checkpoint on the test
split (``varattn evaluate``): NLL under the prior, ELBO (vae-*), VQA accuracy, prior entropy and how often
the prior's argmax is the region the answer depends on. About five minutes on two CPU cores.

    python benchmarks/vqa_synthetic.py --epochs 12 --threads 1

Writes ``benchmarks/results/vqa_synthetic.{json,md}`` next to this script.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
from harness import RESULTS, ROOT, fmt, table, write_results
from varattn.latent import MODE_RECORDS
from varattn.models.vqa import vqa_supports

MODES = tuple(name for name, record in MODE_RECORDS.items() if vqa_supports(record))
RECIPE = ROOT / "configs" / "vqa" / "synthetic.yaml"


def one_mode(mode: str, data_dir: Path, work: Path, epochs: int, threads: int) -> dict:
    run_dir = work / "runs" / mode
    resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
    started = time.perf_counter()
    harness.varattn("train", RECIPE, "--out", run_dir, *resume, f"data.dir={data_dir}", f"model.mode={mode}",
                    f"train.epochs={epochs}", "train.progress=false", "train.device=cpu", log=work / f"{mode}.log",
                    threads=threads)
    seconds = time.perf_counter() - started
    scores = work / f"{mode}.test.json"
    harness.varattn("evaluate", run_dir, "--data", data_dir, "--split", "test", "--json", scores, "--device", "cpu",
                    threads=threads)
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"mode": mode, "train_seconds": seconds, "test": json.loads(scores.read_text()), "history": history}


def results_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        t = r["test"]
        best = int(json.loads(Path(t["checkpoint"]).read_text())["progress"]["best_epoch"])
        rows.append([r["mode"], fmt(t["nll"], ".3f"), fmt(t["elbo"], ".3f"), fmt(100 * t["accuracy"], ".1f"),
                     fmt(100 * t["accuracy_vqa_eval"], ".1f"), fmt(t["entropy"]), fmt(100 * t["region_accuracy"], ".1f"),
                     best, fmt(r["train_seconds"], ".0f")])
    lines = [table(["mode", "NLL", "ELBO", "accuracy", "accuracy (VQA eval)", "prior entropy", "region accuracy",
                    "best epoch", "train (s)"], rows)]
    chance = results[0]["test"]["chance_region_accuracy"]
    lines.append("")
    lines.append(f"Chance region accuracy (mean 1 / #regions): {100 * chance:.1f}%. Accuracy and region accuracy "
                 "in %; NLL and ELBO in nats per question.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/vqa-synthetic-bench", help="folder for the data and the runs")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--questions", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--parallel", type=int, default=1, help="modes trained side by side")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    started = time.perf_counter()
    if not (data_dir / "meta.json").is_file():
        harness.varattn("prepare", "vqa-synthetic", "--out", data_dir, "--questions", args.questions,
                        "--seed", args.seed, threads=args.threads)
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda m: one_mode(m, data_dir, work, args.epochs, args.threads), args.modes))
    total = time.perf_counter() - started
    record = {"epochs": args.epochs, "questions": args.questions, "seed": args.seed, "threads": args.threads,
              "parallel": args.parallel, "total_seconds": total, "recipe": str(RECIPE.relative_to(ROOT)),
              "data": json.loads((data_dir / "meta.json").read_text()).get("synthetic"),
              "results": results}
    command = harness.command_line(__file__)  # the stamp's command, machine (threads per run), commit, date
    text = (f"# Synthetic VQA, six modes\n\n`{command}` — {args.epochs} epochs of "
            f"{args.questions} questions each, `{record['recipe']}`, test split (2,000 questions), best "
            f"checkpoint by the validation metric (NLL; ELBO for vae-*); {total / 60:.1f} min in all on "
            f"{os.cpu_count()} CPU cores.\n\n{results_table(results)}\n")
    write_results(RESULTS / "vqa_synthetic", record, text, command=command, threads=args.threads)
    print(text)


if __name__ == "__main__":
    main()

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
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from varattn.latent import MODE_RECORDS
from varattn.models.vqa import vqa_supports

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODES = tuple(name for name, record in MODE_RECORDS.items() if vqa_supports(record))
RECIPE = ROOT / "configs" / "vqa" / "synthetic.yaml"


def run(args: list[str], env: dict, log: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "varattn", *args], check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=open(log, "w") if log else subprocess.DEVNULL)


def one_mode(mode: str, data_dir: Path, work: Path, epochs: int, env: dict) -> dict:
    run_dir = work / "runs" / mode
    resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
    started = time.perf_counter()
    run(["train", str(RECIPE), "--out", str(run_dir), *resume, f"data.dir={data_dir}", f"model.mode={mode}",
         f"train.epochs={epochs}", "train.progress=false", "train.device=cpu"], env, work / f"{mode}.log")
    seconds = time.perf_counter() - started
    scores = work / f"{mode}.test.json"
    run(["evaluate", str(run_dir), "--data", str(data_dir), "--split", "test", "--json", str(scores),
         "--device", "cpu"], env)
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"mode": mode, "train_seconds": seconds, "test": json.loads(scores.read_text()), "history": history}


def table(results: list[dict]) -> str:
    def cell(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["| mode | NLL | ELBO | accuracy | accuracy (VQA eval) | prior entropy | region accuracy | "
             "best epoch | train (s) |", "| --- |" + " ---: |" * 8]
    for r in results:
        t = r["test"]
        best = int(json.loads(Path(t["checkpoint"]).read_text())["progress"]["best_epoch"])
        lines.append(f"| {r['mode']} | {cell(t['nll'])} | {cell(t['elbo'])} | {cell(100 * t['accuracy'], 1)} | "
                     f"{cell(100 * t['accuracy_vqa_eval'], 1)} | {cell(t['entropy'], 2)} | "
                     f"{cell(100 * t['region_accuracy'], 1)} | {best} | {r['train_seconds']:.0f} |")
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
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    data_dir = work / "data"
    started = time.perf_counter()
    if not (data_dir / "meta.json").is_file():
        run(["prepare", "vqa-synthetic", "--out", str(data_dir), "--questions", str(args.questions),
             "--seed", str(args.seed)], env)
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda m: one_mode(m, data_dir, work, args.epochs, env), args.modes))
    total = time.perf_counter() - started
    import torch

    record = {"command": "python benchmarks/vqa_synthetic.py " + " ".join(sys.argv[1:]),
              "epochs": args.epochs, "questions": args.questions, "seed": args.seed, "threads": args.threads,
              "parallel": args.parallel, "total_seconds": total, "recipe": str(RECIPE.relative_to(ROOT)),
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpus": os.cpu_count(), "platform": platform.platform()},
              "data": json.loads((data_dir / "meta.json").read_text()).get("synthetic"),
              "results": results}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "vqa_synthetic.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    text = (f"# Synthetic VQA, six modes\n\n`{record['command']}` — {args.epochs} epochs of "
            f"{args.questions} questions each, `{record['recipe']}`, test split (2,000 questions), best "
            f"checkpoint by the validation metric (NLL; ELBO for vae-*); {total / 60:.1f} min in all on "
            f"{os.cpu_count()} CPU cores.\n\n{table(results)}\n")
    (out / "vqa_synthetic.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()

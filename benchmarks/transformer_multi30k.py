"""Transformer rows beside the RNN rows of ``multi30k_modes`` (issue 12): the same prepared Multi30k
(pairs <= 15 BPE tokens, 3k merges), the same batches (600 padded tokens), learning rate and seed;
a small pre-LN Transformer (2+2 layers, width 128, 4 heads, feed-forward 256) with its latent head,
trained for the same number of epochs per mode, one at a time, then scored on test (exact PPL, ELBO PPL,
KL, prior entropy, BLEU with beam 5). The RNN rows are read from ``results/multi30k_modes.json`` at the
same epoch (that table has no BLEU).

    python benchmarks/transformer_multi30k.py --epochs 2

Writes ``benchmarks/results/transformer_multi30k.{json,md}`` after each mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def rel(path) -> str:
    """A path as the recorded commands show it: relative to the repository when inside it."""
    return os.path.relpath(path, ROOT) if str(Path(path).resolve()).startswith(str(ROOT)) else str(path)
TRANSFORMER = {"encoder_layers": 2, "decoder_layers": 2, "width": 128, "heads": 4, "ffn": 256, "dropout": 0.2,
               "attention_dropout": 0.1, "inf_layers": 1}
TRAIN = {"lr": 0.001, "decay_from_epoch": 4, "seed": 1, "progress": "false", "device": "cpu", "adam_beta2": 0.999,
         "clip_norm": 5.0}
DATA = {"max_tokens": 600, "eval_max_tokens": 6000}
MODEL = {"enum_block": 100000}


def prepare(shared: Path, data_dir: Path) -> None:
    if (data_dir / "meta.json").is_file():
        return
    subprocess.run([sys.executable, "-m", "varattn", "prepare", "multi30k", "--from", str(shared), "--out",
                    str(data_dir), "--bpe-merges", "3000", "--max-len", "15", "--filter-eval"],
                   check=True, stdout=subprocess.DEVNULL)


def command(mode: str, data_dir: Path, run_dir: Path, epochs: int, extra: list[str]) -> list[str]:
    overrides = [f"data.dir={rel(data_dir)}", f"train.epochs={epochs}"]
    overrides += [f"transformer.{k}={v}" for k, v in TRANSFORMER.items()]
    overrides += [f"train.{k}={v}" for k, v in TRAIN.items()]
    overrides += [f"data.{k}={v}" for k, v in DATA.items()]
    overrides += [f"model.{k}={v}" for k, v in MODEL.items()]
    return ["varattn", "train", "configs/multi30k/transformer.yaml", f"model.mode={mode}", "--out", rel(run_dir),
            *overrides, *extra]


def run_mode(mode: str, name: str, data_dir: Path, runs: Path, epochs: int, extra: list[str]) -> dict:
    run_dir = runs / name
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    train = command(mode, data_dir, run_dir, epochs, extra)
    started = time.perf_counter()
    if not (run_dir / "log.jsonl").is_file() or len((run_dir / "log.jsonl").read_text().splitlines()) < epochs:
        resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
        subprocess.run([sys.executable, "-m", *train, *resume], check=True, env=env, cwd=ROOT,
                       stdout=subprocess.DEVNULL, stderr=open(runs / f"{name}.log", "w"))
    train_seconds = time.perf_counter() - started
    evaluate = ["varattn", "evaluate", rel(run_dir), "--data", rel(data_dir), "--split", "test", "--beam", "5",
                "--json", rel(runs / f"{name}.test.json")]
    subprocess.run([sys.executable, "-m", *evaluate], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=open(runs / f"{name}.eval.log", "w"))
    history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    test = json.loads((runs / f"{name}.test.json").read_text())
    return {"mode": mode, "name": name, "arch": "transformer", "train_seconds": train_seconds,
            "history": history, "test": test, "commands": [" ".join(train), " ".join(evaluate)]}


def rnn_rows(path: Path, epochs: int, modes: list[str]) -> list[dict]:
    if not path.is_file():
        return []
    recorded = json.loads(path.read_text())
    rows = []
    for result in recorded["results"]:
        if result["mode"] in modes and len(result["history"]) >= epochs:
            rows.append({"mode": result["mode"], "name": f"rnn {result['mode']}", "arch": "rnn",
                         "history": result["history"][:epochs], "seconds": result["seconds"]})
    return rows


def fmt(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| model | mode | valid exact PPL | valid ELBO PPL | valid KL | valid prior entropy | test exact PPL | "
             "test ELBO PPL | test KL | test BLEU (beam 5) |", "| --- | --- |" + " ---: |" * 8]
    for row in rows:
        last, test = row["history"][-1], row.get("test", {})
        lines.append(f"| {row['arch']} | {row['name'].removeprefix('rnn ')} | {fmt(last['ppl'])} | "
                     f"{fmt(last.get('elbo_ppl'))} | {fmt(last.get('kl'), 3)} | {fmt(last.get('entropy'))} | "
                     f"{fmt(test.get('ppl'))} | {fmt(test.get('elbo_ppl'))} | {fmt(test.get('kl'), 3)} | "
                     f"{fmt(test.get('bleu'))} |")
    return "\n".join(lines)


def write(out: Path, args, rows: list[dict]) -> None:
    record = {"epochs": args.epochs, "transformer": TRANSFORMER, "train": TRAIN, "data": DATA, "model": MODEL,
              "script": f"python benchmarks/transformer_multi30k.py --epochs {args.epochs}", "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    body = [f"Multi30k De-En (pairs <= 15 BPE tokens; valid 447, test 476 pairs) after {args.epochs} epochs, "
            "one CPU thread per run, one run at a time. RNN rows: `results/multi30k_modes.json` at the same epoch "
            "(no test scores recorded there).", "", table(rows), "", "Per epoch, validation exact PPL (/ ELBO PPL, KL):", ""]
    for row in rows:
        cells = [f"{h['ppl']:.2f}" + (f" / {h['elbo_ppl']:.2f}, {h['kl']:.3f}" if "elbo_ppl" in h else "")
                 for h in row["history"]]
        body.append(f"- {row['arch']} {row['name'].removeprefix('rnn ')}: " + "; ".join(cells))
    body += ["", "Commands:", ""] + [f"    {c}" for row in rows for c in row.get("commands", [])]
    out.with_suffix(".md").write_text("\n".join(body) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data" / "multi30k"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "tr-bench"))
    parser.add_argument("--modes", nargs="+", default=["soft", "marginal", "vae-enum", "hard-enum"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("MODE", "OVERRIDE"),
                        help="an extra Transformer run of MODE with one override, e.g. vae-enum transformer.cross_attention=none")
    parser.add_argument("--results", default=str(HERE / "results" / "transformer_multi30k"))
    args = parser.parse_args()
    work = Path(args.work)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    prepare(Path(args.shared), data_dir)
    rows = rnn_rows(HERE / "results" / "multi30k_modes.json", args.epochs, args.modes)
    runs = [(mode, mode, []) for mode in args.modes]
    runs += [(mode, f"{mode}+{override.split('.')[-1]}", [override]) for mode, override in args.variant]
    for mode, name, extra in runs:
        rows.append(run_mode(mode, name, data_dir, work / "runs", args.epochs, extra))
        write(Path(args.results), args, rows)
        print(f"{name}: done", flush=True)
    print(Path(args.results).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()

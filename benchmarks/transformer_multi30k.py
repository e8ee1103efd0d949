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
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, SHARED, command_line, fmt, rel, table, write_results

TRANSFORMER = {"encoder_layers": 2, "decoder_layers": 2, "width": 128, "heads": 4, "ffn": 256, "dropout": 0.2,
               "attention_dropout": 0.1, "inf_layers": 1}
TRAIN = {"lr": 0.001, "decay_from_epoch": 4, "seed": 1, "progress": "false", "device": "cpu", "adam_beta2": 0.999,
         "clip_norm": 5.0}
DATA = {"max_tokens": 600, "eval_max_tokens": 6000}
MODEL = {"enum_block": 100000}


def prepare(shared: Path, data_dir: Path) -> None:
    if (data_dir / "meta.json").is_file():
        return
    harness.varattn("prepare", "multi30k", "--from", shared, "--out", data_dir, "--bpe-merges", "3000",
                    "--max-len", "15", "--filter-eval", console=True)


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
    train = command(mode, data_dir, run_dir, epochs, extra)
    started = time.perf_counter()
    if not (run_dir / "log.jsonl").is_file() or len((run_dir / "log.jsonl").read_text().splitlines()) < epochs:
        resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
        harness.varattn(*train[1:], *resume, log=runs / f"{name}.log", cwd=ROOT)
    train_seconds = time.perf_counter() - started
    evaluate = ["varattn", "evaluate", rel(run_dir), "--data", rel(data_dir), "--split", "test", "--beam", "5",
                "--json", rel(runs / f"{name}.test.json")]
    harness.varattn(*evaluate[1:], log=runs / f"{name}.eval.log", cwd=ROOT)
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


def rows_table(rows: list[dict]) -> str:
    cells = []
    for row in rows:
        last, test = row["history"][-1], row.get("test", {})
        cells.append([row["arch"], row["name"].removeprefix("rnn "), fmt(last["ppl"]), fmt(last.get("elbo_ppl")),
                      fmt(last.get("kl"), ".3f"), fmt(last.get("entropy")), fmt(test.get("ppl")),
                      fmt(test.get("elbo_ppl")), fmt(test.get("kl"), ".3f"), fmt(test.get("bleu"))])
    return table(["model", "mode", "valid exact PPL", "valid ELBO PPL", "valid KL", "valid prior entropy",
                  "test exact PPL", "test ELBO PPL", "test KL", "test BLEU (beam 5)"], cells, align="ll" + "r" * 8)


def write(out: Path, args, rows: list[dict]) -> str:
    """``OUT.json`` and ``OUT.md`` (a suffix on ``out`` is replaced), stamped; the markdown."""
    script = command_line(__file__)
    record = {"epochs": args.epochs, "transformer": TRANSFORMER, "train": TRAIN, "data": DATA, "model": MODEL,
              "script": script, "rows": rows}
    body = [f"Multi30k De-En (pairs <= 15 BPE tokens; valid 447, test 476 pairs) after {args.epochs} epochs, "
            "one CPU thread per run, one run at a time. RNN rows: `results/multi30k_modes.json` at the same epoch "
            "(no test scores recorded there).", "", rows_table(rows), "", "Per epoch, validation exact PPL (/ ELBO PPL, KL):", ""]
    for row in rows:
        cells = [f"{h['ppl']:.2f}" + (f" / {h['elbo_ppl']:.2f}, {h['kl']:.3f}" if "elbo_ppl" in h else "")
                 for h in row["history"]]
        body.append(f"- {row['arch']} {row['name'].removeprefix('rnn ')}: " + "; ".join(cells))
    body += ["", "Commands:", ""] + [f"    {c}" for row in rows for c in row.get("commands", [])]
    text = "\n".join(body) + "\n"
    write_results(out.with_suffix(""), record, text, command=script, threads=1)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(SHARED / "multi30k"))
    parser.add_argument("--work", default=str(ROOT / "runs" / "tr-bench"))
    parser.add_argument("--modes", nargs="+", default=["soft", "marginal", "vae-enum", "hard-enum"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("MODE", "OVERRIDE"),
                        help="an extra Transformer run of MODE with one override, e.g. vae-enum transformer.cross_attention=none")
    parser.add_argument("--results", default=str(RESULTS / "transformer_multi30k"))
    args = parser.parse_args()
    work = Path(args.work)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    prepare(Path(args.shared), data_dir)
    rows = rnn_rows(RESULTS / "multi30k_modes.json", args.epochs, args.modes)
    runs = [(mode, mode, []) for mode in args.modes]
    runs += [(mode, f"{mode}+{override.split('.')[-1]}", [override]) for mode, override in args.variant]
    text = "no runs\n"
    for mode, name, extra in runs:
        rows.append(run_mode(mode, name, data_dir, work / "runs", args.epochs, extra))
        text = write(Path(args.results), args, rows)
        print(f"{name}: done", flush=True)
    print(text)


if __name__ == "__main__":
    main()

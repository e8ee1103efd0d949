"""Alignment quality of the Transformer's latent head against its soft cross-attention heads (issue 12).

On the synthetic corpus (gold word links; ``varattn prepare synthetic``), small Transformers are trained
with ``varattn train`` for the same epochs: ``soft`` and latent modes, with the lower decoder layers'
soft cross-attention on (``all``), off (``none``) or reading stop-gradient source vectors
(``detached``). For each run: validation exact PPL, ELBO PPL, KL, prior entropy, and test AER (argmax
word links, no threshold) of the latent prior and posterior (or the soft model's attention head), of the
decoder's soft cross-attention averaged over layers and heads, and of its best single (layer, head).

    python benchmarks/transformer_alignment.py --epochs 3

Writes ``benchmarks/results/transformer_alignment.{json,md}`` after each run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, command_line, fmt, rel, table, write_results

TRANSFORMER = {"encoder_layers": 2, "decoder_layers": 2, "width": 64, "heads": 4, "ffn": 128, "dropout": 0.1,
               "attention_dropout": 0.0, "inf_layers": 1}
TRAIN = {"lr": 0.001, "decay_from_epoch": 3, "seed": 1, "progress": "false", "device": "cpu", "adam_beta2": 0.999,
         "clip_norm": 5.0}
DATA = {"max_tokens": 1200, "eval_max_tokens": 4000}
RUNS = [("soft", "all"), ("marginal", "all"), ("marginal", "none"), ("vae-enum", "all"), ("vae-enum", "none"),
        ("vae-enum", "detached")]


def train(mode: str, cross: str, data_dir: Path, run_dir: Path, epochs: int) -> tuple[list[str], float]:
    overrides = [f"data.dir={rel(data_dir)}", f"train.epochs={epochs}", f"transformer.cross_attention={cross}",
                 "model.enum_block=100000"]
    overrides += [f"transformer.{k}={v}" for k, v in TRANSFORMER.items()]
    overrides += [f"train.{k}={v}" for k, v in TRAIN.items()] + [f"data.{k}={v}" for k, v in DATA.items()]
    command = ["varattn", "train", "configs/multi30k/transformer.yaml", f"model.mode={mode}", "--out", rel(run_dir), *overrides]
    started = time.perf_counter()
    if not (run_dir / "log.jsonl").is_file() or len((run_dir / "log.jsonl").read_text().splitlines()) < epochs:
        resume = ["--resume"] if (run_dir / "checkpoint_last.json").is_file() else []
        harness.varattn(*command[1:], *resume, log=f"{run_dir}.log", cwd=ROOT)
    return command, time.perf_counter() - started


def alignment_scores(run_dir: Path, data_dir: Path) -> dict:
    """Test AER per distribution, and per (layer, head) of the soft cross-attention where there is one."""
    import torch

    from varattn.analysis import align
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    torch.set_num_threads(1)
    run = load_run(run_dir, torch.device("cpu"))
    data = load_prepared(data_dir)
    found = align.scores(align.align_split(run, data, "test"))
    result = {"aer": {name: counts.aer for name, counts in found.items()},
              "precision": {name: counts.precision for name, counts in found.items()},
              "recall": {name: counts.recall for name, counts in found.items()}}
    if "cross" in found:
        t = run.model.transformer
        heads = {}
        for layer in range(t.decoder_layers):
            for head in range(t.heads):
                run.model.select_heads(layer, head)
                heads[f"{layer},{head}"] = align.scores(align.align_split(run, data, "test"))["cross"].aer
        run.model.select_heads(None, None)
        result["heads"] = heads
        result["best_head"] = min(heads, key=heads.get)
    return result


def rows_table(rows: list[dict]) -> str:
    cells = []
    for row in rows:
        last, aer = row["history"][-1], row["alignment"]["aer"]
        heads = row["alignment"].get("heads")
        best = row["alignment"].get("best_head")
        cells.append([row["mode"], row["cross"], fmt(last["ppl"]), fmt(last.get("elbo_ppl")), fmt(last.get("kl"), ".3f"),
                      fmt(last.get("entropy")), fmt(aer.get("prior", aer.get("attention")), ".3f"),
                      fmt(aer.get("posterior"), ".3f"), fmt(aer.get("cross"), ".3f"),
                      *([f"{heads[best]:.3f} ({best})", f"{max(heads.values()):.3f}"] if heads else ["–", "–"])])
    return table(["mode", "cross-attention", "valid PPL", "ELBO PPL", "KL", "prior entropy",
                  "AER prior (soft: attention head)", "AER posterior", "AER cross, mean of heads",
                  "AER best single head (layer,head)", "AER worst head"], cells, align="ll" + "r" * 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "runs" / "tr-align"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=TRAIN["lr"])
    parser.add_argument("--runs", nargs="+", default=[f"{m}:{c}" for m, c in RUNS], help="mode:cross_attention")
    parser.add_argument("--results", default=str(RESULTS / "transformer_alignment"))
    args = parser.parse_args()
    TRAIN["lr"] = args.lr
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = work / "data"
    prepare = ["varattn", "prepare", "synthetic", "--out", rel(data_dir), "--pairs", str(args.pairs), "--seed", "1"]
    if not (data_dir / "meta.json").is_file():
        harness.varattn(*prepare[1:], cwd=ROOT, console=True)
    rows, text = [], "no runs\n"
    script = command_line(__file__)
    for item in args.runs:
        mode, cross = item.split(":")
        run_dir = work / f"{mode}-{cross}"
        command, seconds = train(mode, cross, data_dir, run_dir, args.epochs)
        history = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
        rows.append({"mode": mode, "cross": cross, "seconds": seconds, "history": history,
                     "alignment": alignment_scores(run_dir, data_dir), "command": " ".join(command)})
        record = {"epochs": args.epochs, "transformer": TRANSFORMER, "train": TRAIN, "data": DATA,
                  "prepare": " ".join(prepare), "script": script, "rows": rows}
        text = (f"Synthetic corpus ({args.pairs} pairs, gold word links), {args.epochs} epochs, Adam {args.lr:g}, "
                "one CPU thread. AER on the test split: argmax word links, no threshold (lower is better). "
                "Validation scores from the last epoch.\n\n" + rows_table(rows) + f"\n\nCommands (`{script}` runs "
                "them all):\n\n    " + " ".join(prepare) + "\n" + "".join(f"    {row['command']}\n" for row in rows))
        # STEM.json and STEM.md, as before: a suffix given with --results is replaced
        write_results(Path(args.results).with_suffix(""), record, text, command=script, threads=1)
        print(f"{mode} {cross}: done", flush=True)
    print(text)


if __name__ == "__main__":
    main()

"""Word alignment on the synthetic corpus (issue 13): AER, precision and recall against its gold links of a
soft model's attention and a vae-enum model's prior and posterior, in one direction, in the other, and
symmetrised by each heuristic.

Prepares the synthetic corpus once (``varattn prepare synthetic``), trains four small models with
``configs/align/synthetic.yaml`` — soft and vae-enum, each source -> target and (``data.reverse=true``, from
the same folder) target -> source — then aligns the test split with both directions of each
(``varattn align RUN --reverse-run RUN2``'s library side) and scores every way of drawing word links.
About 15 minutes on one CPU thread (``--pairs 4000 --epochs 5``: 10, short-trained).

    python benchmarks/align_synthetic.py --threads 1

Writes ``benchmarks/results/align_synthetic.{json,md}`` next to this script.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, command_line, table, write_results

RECIPE = ROOT / "configs" / "align" / "synthetic.yaml"
ROWS = ("forward", "reverse", "intersect", "union", "grow-diag", "grow-diag-final", "grow-diag-final-and",
        "soft-product", "soft-mean")


def train(mode: str, reverse: bool, data_dir: Path, work: Path, epochs: int, threads: int, device: str
          ) -> tuple[Path, float]:
    name = f"{mode}-{'rv' if reverse else 'fw'}"
    run_dir = work / "runs" / name
    started = time.perf_counter()
    if not (run_dir / "checkpoint_best.json").is_file():
        harness.varattn("train", RECIPE, "--out", run_dir, f"data.dir={data_dir}", f"model.mode={mode}",
                        f"data.reverse={'true' if reverse else 'false'}", f"train.epochs={epochs}",
                        "train.progress=false", f"train.device={device}", threads=threads, log=work / f"{name}.log")
    return run_dir, time.perf_counter() - started


def score_all(forward_dir: Path, reverse_dir: Path, data_dir: Path, soft_threshold: float) -> dict:
    """AER counts of every row of the table for every distribution the model gives."""
    import torch

    from varattn.analysis import align, wordlinks
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    cpu = torch.device("cpu")
    forward, reverse = load_run(forward_dir, cpu), load_run(reverse_dir, cpu)
    align.check_reverse(forward, reverse)
    fw = align.align_split(forward, load_prepared(data_dir), "test")
    rv = align.align_split(reverse, load_prepared(data_dir, reverse=True), "test")
    golds = [pair.gold for pair in fw]
    out = {}
    for name in fw[0].matrices:
        rows = {"forward": wordlinks.one_direction(fw, name),
                "reverse": [wordlinks.WordAlignment(a.index, a.tgt, a.src, sorted((j, i) for i, j in a.links),
                                                    a.probs, a.entropy) for a in wordlinks.one_direction(rv, name)]}
        for heuristic in ROWS[2:]:
            rows[heuristic] = wordlinks.two_directions(fw, rv, heuristic, name=name, reverse_name=name,
                                                       soft_threshold=soft_threshold)
        out[name] = {row: wordlinks.score(found, golds).as_dict() for row, found in rows.items()}
    return out


def scores_table(scores: dict) -> str:
    columns = [(mode, name) for mode in scores for name in scores[mode]]
    cell = "{aer:.3f} / {precision:.3f} / {recall:.3f}"
    return table(["links", *(f"{mode} {name} AER / P / R" for mode, name in columns)],
                 [[row, *(cell.format(**scores[mode][name][row]) for mode, name in columns)] for row in ROWS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/align-synthetic-bench", help="folder for the data and the runs")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--soft-threshold", type=float, default=0.25)
    parser.add_argument("--modes", nargs="+", default=["soft", "vae-enum"])
    parser.add_argument("--device", default="cpu", help="where to train (cpu, cuda)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the tables")
    parser.add_argument("--name", default="align_synthetic", help="file name of the tables, without suffix")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(args.threads)
    data_dir = work / "data"
    started = time.perf_counter()
    if not (data_dir / "meta.json").is_file():
        harness.varattn("prepare", "synthetic", "--out", data_dir, "--pairs", args.pairs, "--seed", args.seed,
                        threads=args.threads)
    seconds, scores = {}, {}
    for mode in args.modes:
        fw, seconds[f"{mode} forward"] = train(mode, False, data_dir, work, args.epochs, args.threads, args.device)
        rv, seconds[f"{mode} reverse"] = train(mode, True, data_dir, work, args.epochs, args.threads, args.device)
        scores[mode] = score_all(fw, rv, data_dir, args.soft_threshold)
    total = time.perf_counter() - started
    meta = json.loads((data_dir / "meta.json").read_text())
    record = {"pairs": args.pairs, "epochs": args.epochs, "seed": args.seed, "threads": args.threads,
              "soft_threshold": args.soft_threshold, "device": args.device, "recipe": str(RECIPE.relative_to(ROOT)),
              "test_pairs": meta["splits"]["test"]["pairs"], "train_seconds": seconds, "total_seconds": total,
              "scores": scores}
    text = (f"# Word alignment on the synthetic corpus\n\n{args.pairs} synthetic pairs, "
            f"`{record['recipe']}` ({args.epochs} epochs) trained each way from one prepared folder "
            f"(`data.reverse=true`), best checkpoints; word links on the {record['test_pairs']} test pairs "
            f"against the gold links (sure only). forward: each target word's argmax source word; reverse: "
            f"each source word's argmax target word (the model trained target -> source); the heuristics "
            f"symmetrise the two; soft-*: the two matrices multiplied or averaged, links >= "
            f"{args.soft_threshold}. Trained on {args.device}; {total / 60:.1f} min in all, "
            f"{args.threads} thread(s).\n\n"
            f"{scores_table(scores)}\n")
    write_results(Path(args.results) / args.name, record, text, command=command_line(__file__),
                  device=args.device, threads=args.threads)
    print(text)


if __name__ == "__main__":
    main()

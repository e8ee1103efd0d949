"""Multi30k De-En word alignment both ways (issue 13): how far the two directions of vae-enum agree.

Trains ``configs/align/vae-enum.yaml`` De->En and, from the same prepared folder (``data.reverse=true``),
En->De; aligns the test split with both (teacher-forced, word level, argmax links) and reports, for the
prior and the posterior, the agreement of the two directions' links F (each English word's German word)
and R (each German word's English word): |F∩R|/|F|, |F∩R|/|R| and |F∩R|/|F∪R|, and how many links each
symmetrisation keeps. There are no gold links for Multi30k, so agreement is the measure (Liang et al.
2006: two directions that agree are more often right). Draws both directions' posteriors for a few test
sentences.

    varattn prepare multi30k --from ../shared/data/multi30k --out data/m30k15 --bpe-merges 3000 \\
        --max-len 15 --filter-eval
    python benchmarks/align_multi30k.py --data data/m30k15 --device cuda --epochs 10

Writes ``align_multi30k.{json,md}`` and ``align_multi30k.png`` into ``--results`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import harness
from harness import RESULTS, ROOT, command_line, table, write_results

RECIPE = ROOT / "configs" / "align" / "vae-enum.yaml"
HEURISTICS = ("intersect", "grow-diag", "grow-diag-final-and", "grow-diag-final", "union")


def train(data: Path, run_dir: Path, reverse: bool, epochs: int, device: str, seconds: float) -> float:
    started = time.perf_counter()
    if not (run_dir / "checkpoint_best.json").is_file():
        harness.varattn("train", RECIPE, "--out", run_dir, f"data.dir={data}",
                        f"data.reverse={'true' if reverse else 'false'}", f"train.epochs={epochs}",
                        f"train.max_seconds={seconds}", "train.progress=false", f"train.device={device}",
                        log=run_dir.parent / f"{run_dir.name}.log")
    return time.perf_counter() - started


def agreement(forward: list[set], reverse: list[set]) -> dict:
    both = sum(len(f & r) for f, r in zip(forward, reverse))
    f_total, r_total = sum(map(len, forward)), sum(map(len, reverse))
    union = sum(len(f | r) for f, r in zip(forward, reverse))
    return {"forward_links": f_total, "reverse_links": r_total, "shared": both,
            "shared_of_forward": both / f_total, "shared_of_reverse": both / r_total, "jaccard": both / union}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared Multi30k De-En folder")
    parser.add_argument("--work", default="runs/align-multi30k")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=0, help="stop each training run after this long")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pictures", type=int, nargs="+", default=[0, 7, 12], help="test pairs to draw")
    args = parser.parse_args()
    from varattn.analysis import align, pictures, symmetrize, wordlinks
    from varattn.data.text.prepared import load_prepared
    from varattn.device import resolve_device
    from varattn.training.runs import load_run

    work, data = Path(args.work), Path(args.data)
    (work / "runs").mkdir(parents=True, exist_ok=True)
    fw_dir, rv_dir = work / "runs" / "de-en", work / "runs" / "en-de"
    seconds = {"de-en": train(data, fw_dir, False, args.epochs, args.device, args.max_seconds),
               "en-de": train(data, rv_dir, True, args.epochs, args.device, args.max_seconds)}
    device = resolve_device(args.device)
    fw_run, rv_run = load_run(fw_dir, device), load_run(rv_dir, device)
    align.check_reverse(fw_run, rv_run)
    started = time.perf_counter()
    fw = align.align_split(fw_run, load_prepared(data), "test")
    rv = align.align_split(rv_run, load_prepared(data, reverse=True), "test")
    align_seconds = time.perf_counter() - started
    results = {}
    for name in ("prior", "posterior"):
        f_links = [set(a.links) for a in wordlinks.one_direction(fw, name)]
        r_links = [{(j, i) for i, j in a.links} for a in wordlinks.one_direction(rv, name)]
        results[name] = agreement(f_links, r_links)
        results[name]["symmetrised_links"] = {
            h: sum(len(a.links) for a in wordlinks.two_directions(fw, rv, h, name=name, reverse_name=name))
            for h in HEURISTICS}
    prior_vs_posterior = {}
    for label, pairs in (("de-en", fw), ("en-de", rv)):
        prior = [set(a.links) for a in wordlinks.one_direction(pairs, "prior")]
        posterior = [set(a.links) for a in wordlinks.one_direction(pairs, "posterior")]
        prior_vs_posterior[label] = agreement(prior, posterior)["jaccard"]
    history = {k: [json.loads(x) for x in (d / "log.jsonl").read_text().splitlines()][-1]
               for k, d in (("de-en", fw_dir), ("en-de", rv_dir))}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    shown = [i for i in args.pictures if i < len(fw)]
    for k in shown[:1]:
        F, R = wordlinks.directions(fw[k], rv[k], "posterior", "posterior")
        figure = pictures.directions_figure(wordlinks.src_words(fw[k]), wordlinks.tgt_words(fw[k]), F, R,
                                            f"Multi30k test pair {k}: posteriors of both directions",
                                            ("de->en posterior", "en->de posterior"))
        pictures.save(figure, out / "align_multi30k", ("png",))
    record = {"recipe": str(RECIPE.relative_to(ROOT)), "epochs": args.epochs, "device": str(device),
              "test_pairs": len(fw), "train_seconds": seconds, "align_seconds": align_seconds,
              "last_validation": history, "agreement": results, "prior_posterior_jaccard": prior_vs_posterior,
              "pictured_pair": shown[:1], "heuristics_order": list(symmetrize.HARD)}
    rows = [[name, r["forward_links"], r["reverse_links"], f"{r['shared_of_forward']:.3f}",
             f"{r['shared_of_reverse']:.3f}", f"{r['jaccard']:.3f}", *(r["symmetrised_links"][h] for h in HEURISTICS)]
            for name, r in results.items()]
    val = ", ".join(f"{k}: PPL {v.get('ppl', float('nan')):.2f}, epoch {v.get('epoch')}" for k, v in history.items())
    text = (f"# Multi30k De-En, vae-enum both ways: agreement of the directions\n\n"
            f"`{record['recipe']}`, {record['test_pairs']} test pairs (≤ 15 BPE tokens), word-level argmax "
            f"links; device {record['device']}; last validation {val}.\n\n"
            + table(["distribution", "links de→en", "links en→de", "shared / de→en", "shared / en→de", "Jaccard",
                     *(f"{h} links" for h in HEURISTICS)], rows) +
            f"\n\nJaccard of prior and posterior links within a direction: de→en "
            f"{prior_vs_posterior['de-en']:.3f}, en→de {prior_vs_posterior['en-de']:.3f}.\n")
    write_results(out / "align_multi30k", record, text, command=command_line(__file__), device=device)
    print(text)


if __name__ == "__main__":
    main()

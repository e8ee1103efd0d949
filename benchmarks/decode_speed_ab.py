"""Decoding speed of two versions of varattn on a trained run, interleaved (issue 16): is a change to the
search or to the model's decoding step faster, and does it find the same translations?

Each round runs one fresh process per version (``--base``, ``--head``: a git commit or ``WORKTREE``, as in
``step_speed_ab.py``; which goes first alternates by round), one thread each; a process loads the run's
best checkpoint, decodes the first ``--sentences`` of ``--split`` of ``--data`` once to warm up on 20
sentences, then times :func:`varattn.decoding.translate.decode_nbest` on all of them with the given beam,
K-max and the run's α / eos_norm / length limits. Reports seconds per round and version, the ratio
base/head (the speed-up) per round, and whether the best hypotheses, their scores and log-probabilities
are identical between the versions. Writes ``--json`` when given (with the command, commit, machine and
date).

    python benchmarks/decode_speed_ab.py --base 43cc11c --head WORKTREE --run runs/vae-enum \\
        --data data/m30k-3k --sentences 300 --beam 5 --kmax 0 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import ROOT, command_line, environment, source_tree, stamp, write_json


def worker(args) -> None:
    import torch

    from varattn.config import DecodeConfig
    from varattn.data.text.prepared import load_prepared
    from varattn.decoding.translate import decode_nbest
    from varattn.training.runs import load_run

    torch.set_num_threads(1)
    run = load_run(args.run, torch.device("cpu"))
    split = load_prepared(args.data).split(args.split)
    sources = [split.src(i).tolist() for i in range(min(args.sentences, len(split)))]
    decode = run.config.decode
    config = DecodeConfig(beam=args.beam, alpha=decode.alpha, eos_norm=decode.eos_norm, max_len_a=decode.max_len_a,
                          max_len_b=decode.max_len_b, kmax=args.kmax, batch_tokens=args.batch_tokens)
    decode_nbest(run, sources[:20], config)
    start = time.perf_counter()
    found = decode_nbest(run, sources, config)
    seconds = time.perf_counter() - start
    best = [n[0] for n in found]
    print(json.dumps({"seconds": seconds, "tokens": [h.tokens for h in best], "scores": [h.score for h in best],
                      "log_probs": [h.log_prob for h in best]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--head", default="WORKTREE")
    parser.add_argument("--run", required=True, help="a trained run directory")
    parser.add_argument("--data", required=True, help="a prepared folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--sentences", type=int, default=300)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--kmax", type=int, default=0)
    parser.add_argument("--batch-tokens", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", default=str(ROOT / "runs" / "ab-src"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    env = environment(threads=1)
    sources = {name: source_tree(getattr(args, name), Path(args.work)) for name in ("base", "head")}
    rounds, outputs = [], {}
    for r in range(args.rounds):
        row = {"round": r}
        for name in (("base", "head") if r % 2 == 0 else ("head", "base")):
            done = subprocess.run([sys.executable, __file__, "--worker", *sys.argv[1:]], cwd=ROOT, check=True,
                                  capture_output=True, text=True, env=dict(env, PYTHONPATH=str(sources[name])))
            result = json.loads(done.stdout.strip().splitlines()[-1])
            row[f"{name}_seconds"] = result.pop("seconds")
            outputs.setdefault(name, result)
        row["speedup"] = row["base_seconds"] / row["head_seconds"]
        row["load_1min"] = os.getloadavg()[0]
        rounds.append(row)
        print(f"round {r}: base {row['base_seconds']:.2f} s  head {row['head_seconds']:.2f} s  "
              f"base/head {row['speedup']:.2f}  load {row['load_1min']:.2f}", flush=True)
    same = {key: outputs["base"][key] == outputs["head"][key] for key in ("tokens", "scores", "log_probs")}
    speedups = [r["speedup"] for r in rounds]
    record = {"rounds": rounds,
              "speedup": {"median": statistics.median(speedups), "min": min(speedups), "max": max(speedups)},
              "identical": same, "sentences": args.sentences, "beam": args.beam, "kmax": args.kmax}
    print(f"base/head: median {record['speedup']['median']:.2f} (range {min(speedups):.2f}-{max(speedups):.2f}); "
          f"identical best hypotheses / scores / log-probs: {same['tokens']} / {same['scores']} / {same['log_probs']}")
    if args.json:
        write_json(args.json, stamp(record, command_line(__file__), threads=1))


if __name__ == "__main__":
    main()

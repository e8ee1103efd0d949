"""Training-step speed of two versions of varattn, interleaved (issue 16): is a change to the training
step faster, on a machine that other jobs keep busy?

Each version (``--base`` and ``--head``: a git commit, or ``WORKTREE`` for the working tree) runs in its
own worker process with one thread, importing varattn from that version's ``src`` (a commit is unpacked
with ``git archive`` under ``--work``). Both workers build the same model (same seed, same sizes) and the
same batches of Multi30k training pairs, then wait; the parent tells them in turn to run ``--steps``
training steps (forward, loss through ``latent.batch_objective``, backward, clipping at 5, Adam) and
collects their seconds — so the two versions take turns within a few seconds, and which goes first
alternates by round. A round's rate is its real target tokens over the summed step seconds; the ratio is
head / base per round, reported as median and range, with the machine's load.

    python benchmarks/step_speed_ab.py --base 810901d --head WORKTREE --mode soft --rounds 8 --steps 10
    python benchmarks/step_speed_ab.py --base 810901d --head WORKTREE --profile   # + torch.profiler tables

With ``--profile``, each version also profiles ``--steps`` steps (``torch.profiler``, CPU) after the
rounds and prints the operators by self CPU time. Writes ``--json`` when given (with the command, commit,
machine and date).
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
from workloads import SIZES


# ----------------------------------------------------------------------------- worker


def worker(args) -> None:
    """Build the model and batches, then run ``steps`` steps per line read from stdin; answer seconds."""
    import torch

    from varattn import latent
    from varattn.config import ModelConfig
    from varattn.data.text.batching import TokenBatcher, collate
    from varattn.data.text.prepared import load_prepared
    from varattn.models.seq2seq import Seq2Seq

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_prepared(args.data)
    train = data.split("train")
    batcher = TokenBatcher(train.src_lengths, train.tgt_lengths, args.max_tokens, shuffle=True, seed=args.seed)
    wanted = args.warmup + args.rounds * args.steps + (args.steps if args.profile else 0)
    batches = [collate(train, idx) for idx, _ in zip(batcher.batches(0), range(wanted))]
    config = ModelConfig(mode=args.mode, dropout=0.3, **SIZES[args.setting])
    model = Seq2Seq(config, len(data.src_vocab), len(data.tgt_vocab)).train()
    try:  # the trainer's optimizer, where the version has one to give
        from varattn.config import TrainConfig
        from varattn.training.trainer import adam

        optimizer = adam(model.parameters(), TrainConfig(lr=1e-3), torch.device("cpu"))
    except ImportError:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    mode = latent.get_mode(args.mode)
    generator = torch.Generator().manual_seed(args.seed)

    def step(batch) -> float:
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        loss, _ = latent.batch_objective(mode, out, samples=config.samples, generator=generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return time.perf_counter() - start

    for batch in batches[:args.warmup]:
        step(batch)
    position = args.warmup
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "profile":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for batch in batches[position:position + args.steps]:
                    step(batch)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr,
                  flush=True)
            print(json.dumps({"profiled": True}), flush=True)
            continue
        part = batches[position:position + args.steps]
        position += args.steps
        seconds = sum(step(batch) for batch in part)
        tokens = int(sum(int((b.tgt_out != 0).sum()) for b in part))
        print(json.dumps({"seconds": seconds, "tokens": tokens}), flush=True)


# ----------------------------------------------------------------------------- parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git commit, or WORKTREE")
    parser.add_argument("--head", default="WORKTREE", help="git commit, or WORKTREE")
    parser.add_argument("--mode", default="soft")
    parser.add_argument("--setting", choices=SIZES, default="256")
    parser.add_argument("--data", default=str(ROOT / "runs" / "peer" / "multi30k-10k"),
                        help="a prepared folder (varattn prepare multi30k ...)")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--work", default=str(ROOT / "runs" / "ab-src"))
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    env = environment(threads=1)
    forwarded = [a for a in sys.argv[1:]]
    procs = {}
    for name, version in (("base", args.base), ("head", args.head)):
        src = source_tree(version, Path(args.work))
        procs[name] = subprocess.Popen([sys.executable, __file__, "--worker", *forwarded], cwd=ROOT, text=True,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env=dict(env, PYTHONPATH=str(src)))
    for proc in procs.values():
        assert proc.stdout.readline().strip() == "ready"

    def ask(name: str, what: str = "run") -> dict:
        procs[name].stdin.write(what + "\n")
        procs[name].stdin.flush()
        return json.loads(procs[name].stdout.readline())

    rounds = []
    for r in range(args.rounds):
        got = {name: ask(name) for name in (("base", "head") if r % 2 == 0 else ("head", "base"))}
        row = {"round": r, "tokens": got["base"]["tokens"], "load_1min": os.getloadavg()[0],
               **{f"{n}_tokens_per_s": g["tokens"] / g["seconds"] for n, g in got.items()}}
        row["ratio"] = row["head_tokens_per_s"] / row["base_tokens_per_s"]
        rounds.append(row)
        print(f"round {r}: base {row['base_tokens_per_s']:7.0f} tok/s  head {row['head_tokens_per_s']:7.0f} tok/s  "
              f"head/base {row['ratio']:.3f}  load {row['load_1min']:.2f}", flush=True)
    if args.profile:
        for name in ("base", "head"):
            print(f"--- profile of {name} ({getattr(args, name)})", flush=True)
            ask(name, "profile")
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    ratios = [r["ratio"] for r in rounds] or [float("nan")]
    result = {"base": args.base, "head": args.head, "mode": args.mode, "setting": args.setting,
              "max_tokens": args.max_tokens, "steps_per_round": args.steps, "rounds": rounds,
              "ratio": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}}
    print(f"head/base: median {result['ratio']['median']:.3f} (range {min(ratios):.3f}-{max(ratios):.3f})")
    if args.json:
        write_json(args.json, stamp(result, command_line(__file__), threads=1))


if __name__ == "__main__":
    main()

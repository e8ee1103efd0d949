"""Exact enumeration ``log p(y_t | h_t, x_s)`` for all (t, s), forward + backward: time and peak memory of
its implementations (issue 7, items 2 and the memory target).

Implementations, all with the same weights and inputs:

- ``function``: varattn's :class:`varattn.modules.enumeration.BlockwiseEnumeration` (what ``TokenLikelihood``
  uses): per block, logits -> target log-probability; the backward pass recomputes one block's logits
  and forms ``g (onehot - softmax)`` in place; nothing of size V is kept between blocks.
- ``checkpoint``: the previous ``TokenLikelihood`` path: each block through autograd, wrapped in
  ``torch.utils.checkpoint`` (recomputed in the backward pass).
- ``autograd``: one block, plain autograd, everything kept (no recomputation).
- ``naive``: the 2018 path: ``[B, T, S, H+M]`` concatenation, ``W_o`` on it, full ``[B, T, S, V]``
  log-softmax, float32.

Two experiments:

    python benchmarks/enumeration.py speed     # seconds per forward + backward, by block size
    python benchmarks/enumeration.py memory    # peak memory: B·T·S·V grows 8x at a fixed block, then the
                                               # block grows at a fixed B·T·S·V

Each memory point runs in a fresh subprocess and reports its peak resident set size (``VmHWM``) above
its size just before the enumeration (CUDA: ``torch.cuda.max_memory_allocated`` above the allocated
bytes before it). Writes ``benchmarks/results/enumeration_<device>.{json,md}``, keeping the other
experiment's part; each part records its own command, commit, machine and date.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from harness import RESULTS, command_line, describe, environment, peak_rss_bytes, rss_bytes, stamp, table, write_results
from varattn.modules.enumeration import enumerate_blockwise
from varattn.modules.output import OutputLayer

IMPLEMENTATIONS = ("function", "checkpoint", "autograd", "naive")


class Problem:
    """Random inputs of one enumeration: hidden ``[B, T, H]``, memory ``[B, S, M]``, targets ``[B, T]``."""

    def __init__(self, batch: int, length: int, sources: int, hidden: int, memory: int, output: int, vocab: int,
                 device: torch.device, seed: int = 0):
        torch.manual_seed(seed)
        self.layer = OutputLayer(hidden, memory, output, vocab, dropout=0.0).to(device)
        self.hidden = torch.randn(batch, length, hidden, device=device, requires_grad=True)
        self.memory = torch.randn(batch, sources, memory, device=device, requires_grad=True)
        self.targets = torch.randint(4, vocab, (batch, length), device=device)
        self.grad = torch.randn(batch, length, sources, device=device)

    def run(self, implementation: str, block: int) -> None:
        """Forward and backward; gradients land in the layer and the leaves."""
        layer, (batch, length, _), sources = self.layer, self.hidden.shape, self.memory.size(1)
        if implementation == "naive":
            both = torch.cat([self.hidden[:, :, None, :].expand(-1, -1, sources, -1),
                              self.memory[:, None, :, :].expand(-1, length, -1, -1)], -1)
            w_o = torch.cat([layer.from_hidden.weight, layer.from_memory.weight], 1)
            log_probs = F.log_softmax(layer.generator(torch.tanh(F.linear(both, w_o, layer.from_hidden.bias))), -1)
            values = log_probs.gather(-1, self.targets[:, :, None, None].expand(-1, -1, sources, 1)).squeeze(-1)
        else:
            rows = layer.from_hidden(self.hidden).reshape(batch * length, -1)
            projected = layer.from_memory(self.memory)
            row_batch = torch.arange(batch, device=rows.device).repeat_interleave(length)
            targets = self.targets.reshape(-1)
            per_block = max(1, block // sources)
            if implementation == "function":
                values = enumerate_blockwise(rows, projected, row_batch, targets, layer.generator.weight,
                                             layer.generator.bias, per_block)
            else:
                if implementation == "autograd":
                    per_block = rows.size(0)
                pieces = []
                for start in range(0, rows.size(0), per_block):
                    args = (rows[start:start + per_block], projected, row_batch[start:start + per_block],
                            targets[start:start + per_block])
                    pieces.append(checkpoint(self._block, *args, use_reentrant=False)
                                  if per_block < rows.size(0) else self._block(*args))
                values = torch.cat(pieces, 0)
        values.view(batch, length, sources).backward(self.grad)

    def _block(self, rows, projected, row_batch, targets):
        """The previous TokenLikelihood._block."""
        pre = rows[:, None, :] + projected.index_select(0, row_batch)
        return self.layer.target_log_probs(pre, targets[:, None].expand(pre.shape[:-1]))

    def zero_grad(self) -> None:
        for tensor in (self.hidden, self.memory, *self.layer.parameters()):
            tensor.grad = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def point(args, batch: int, implementation: str, block: int) -> dict:
    """Peak memory of one forward + backward in this process (the subprocess body)."""
    device = torch.device(args.device)
    warm = Problem(1, 2, 2, args.hidden, args.memory_size, args.output, args.vocab, device)
    warm.run(implementation, block)  # loads the kernels' code, so that only data is measured
    del warm
    problem = Problem(batch, args.length, args.sources, args.hidden, args.memory_size, args.output, args.vocab,
                      device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        problem.run(implementation, block)
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    else:
        before = rss_bytes()
        problem.run(implementation, block)
        peak = peak_rss_bytes() - before
    return {"implementation": implementation, "batch": batch, "block_cells": block, "peak_bytes": peak,
            "cells": batch * args.length * args.sources,
            "btsv": batch * args.length * args.sources * args.vocab}


def measure_point(args, batch: int, implementation: str, block: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "point", "--batch", str(batch), "--impl", implementation,
               "--block", str(block)] + common_flags(args)
    env = environment(torch.get_num_threads(), MALLOC_MMAP_THRESHOLD_="65536")
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def common_flags(args) -> list[str]:
    return ["--device", args.device, "--length", str(args.length), "--sources", str(args.sources), "--hidden",
            str(args.hidden), "--memory-size", str(args.memory_size), "--output", str(args.output), "--vocab",
            str(args.vocab), "--threads", str(torch.get_num_threads())]


def speed(args) -> list[dict]:
    device = torch.device(args.device)
    problem = Problem(args.batch, args.length, args.sources, args.hidden, args.memory_size, args.output, args.vocab,
                      device)
    cells = args.batch * args.length * args.sources
    flops = 3 * 2 * cells * args.output * args.vocab
    plans = [("naive", 0), ("autograd", 0)] + [(impl, block) for block in args.blocks
                                               for impl in ("checkpoint", "function")]
    times: dict = {plan: [] for plan in plans}
    for plan in plans:  # warm-up
        problem.run(*plan)
        problem.zero_grad()
    for _ in range(args.repeats):  # interleaved, so load on the machine slows all alike
        for plan in plans:
            sync(device)
            start = time.perf_counter()
            problem.run(*plan)
            sync(device)
            times[plan].append(time.perf_counter() - start)
            problem.zero_grad()
    rows = []
    for (impl, block), seconds in times.items():
        best = min(seconds)
        rows.append({"implementation": impl, "block_cells": block or cells, "seconds_min": best,
                     "seconds_median": sorted(seconds)[len(seconds) // 2], "gflop_per_s": flops / best / 1e9,
                     "cells": cells})
    return rows


def memory(args) -> list[dict]:
    rows = []
    for batch in (args.batch, 2 * args.batch, 4 * args.batch, 8 * args.batch):
        for impl in ("function", "checkpoint", "naive"):
            rows.append({"series": "B·T·S·V grows, block fixed", **measure_point(args, batch, impl, args.fixed_block)})
            print(rows[-1], flush=True)
    for block in (args.fixed_block // 4, args.fixed_block // 2, args.fixed_block, 2 * args.fixed_block,
                  4 * args.fixed_block):
        for impl in ("function", "checkpoint"):
            rows.append({"series": "block grows, B·T·S·V fixed", **measure_point(args, 8 * args.batch, impl, block)})
            print(rows[-1], flush=True)
    return rows


def settings(part: dict) -> str:
    m, s = part["machine"], part["sizes"]
    made = f" `{part['command']}`, commit {part['commit']}, {part['date']}." if "command" in part else ""
    return (f"{describe(m)}, load {m['load_average_1min']:.1f}.{made} T = {s['length']}, S = {s['sources']}, "
            f"H = {s['hidden']}, M = {s['memory_size']}, O = {s['output']}, V = {s['vocab']}; float32.")


def markdown(record: dict) -> str:
    lines = [f"# Enumeration: forward + backward ({record['device']})", ""]
    if record.get("speed"):
        part = record["speed"]
        lines += ["## Speed", "", settings(part) + f" B = {part['sizes']['batch']}; GFLOP/s counts "
                  "3 × 2·B·T·S·O·V (the recomputation's extra product not counted).", "",
                  table(["implementation", "block (cells)", "s (min)", "s (median)", "GFLOP/s"],
                        [[r["implementation"], r["block_cells"], f"{r['seconds_min']:.3f}",
                          f"{r['seconds_median']:.3f}", f"{r['gflop_per_s']:.1f}"] for r in part["rows"]]), ""]
    if record.get("memory"):
        part = record["memory"]
        lines += ["## Peak memory of forward + backward above the inputs", "", settings(part), "",
                  table(["series", "implementation", "B", "block (cells)", "B·T·S·V (M)", "peak MB"],
                        [[r["series"], r["implementation"], r["batch"], r["block_cells"], f"{r['btsv'] / 1e6:.0f}",
                          f"{r['peak_bytes'] / 2**20:.1f}"] for r in part["rows"]], align="llrrrr")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["speed", "memory", "both", "point"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4, help="sentences (memory: the first of 1x, 2x, 4x, 8x)")
    parser.add_argument("--length", type=int, default=20, help="T, target tokens per sentence")
    parser.add_argument("--sources", type=int, default=25, help="S, source positions")
    parser.add_argument("--hidden", type=int, default=768, help="H, decoder hidden size")
    parser.add_argument("--memory-size", type=int, default=1024, help="M, source vector size")
    parser.add_argument("--output", type=int, default=768, help="O, output layer size")
    parser.add_argument("--vocab", type=int, default=7464, help="V, target vocabulary")
    parser.add_argument("--blocks", type=int, nargs="+", default=[500, 2000], help="speed: block sizes (cells)")
    parser.add_argument("--fixed-block", type=int, default=500, help="memory: the block of the first series")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default 1, as benchmarks/speed.py)")
    parser.add_argument("--impl", choices=IMPLEMENTATIONS, default="function", help=argparse.SUPPRESS)
    parser.add_argument("--block", type=int, default=500, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="output path without suffix")
    args = parser.parse_args(argv)
    if args.threads or torch.device(args.device).type == "cpu":
        torch.set_num_threads(args.threads or 1)
    if args.what == "point":
        print(json.dumps(point(args, args.batch, args.impl, args.block)))
        return
    sizes = {k: getattr(args, k) for k in ("batch", "length", "sources", "hidden", "memory_size", "output", "vocab")}
    record = {"device": args.device}
    command = command_line(__file__, argv)
    if args.what in ("speed", "both"):
        record["speed"] = stamp({"sizes": sizes, "rows": speed(args)}, command, device=args.device)
    if args.what in ("memory", "both"):
        record["memory"] = stamp({"sizes": sizes, "rows": memory(args)}, command, device=args.device)
    print(markdown(record))
    out = Path(args.out or RESULTS / f"enumeration_{torch.device(args.device).type}")
    old = out.with_name(out.name + ".json")
    if old.is_file():  # keep the other experiment's results
        kept = json.loads(old.read_text(encoding="utf-8"))
        record = {**{k: v for k, v in kept.items() if k in ("speed", "memory")}, **record}
    write_results(out, record, markdown(record), command=command, device=args.device)


if __name__ == "__main__":
    main()

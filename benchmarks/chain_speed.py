"""What the first-order chain (mode ``hmm``) costs on top of the enumeration it shares with ``marginal``.

Both modes compute the emission scores ℓ_t(s) = log p(y_t | z_t = s, h_t) for every target token and
source position by the block-wise enumeration of the output layer (S · O · V per token). ``marginal``
then takes one log-sum-exp over s per token; ``hmm`` runs the forward algorithm, O(T · S²) per sentence.
This script times, forward and backward, for a batch of B sentences of T target tokens and S source
positions:

- ``enumeration``: :func:`varattn.modules.enumeration.enumerate_blockwise` giving ``[B·T, S]``;
- ``independent``: the marginal's reduction, log-sum-exp of prior + emission over s;
- ``chain``: :func:`varattn.latent.chain.chain_forward` on the same emissions and content scores,

interleaved (one repetition of each in turn, ``--repeats`` times; medians), one thread, so the chain's
share of a training step is read as a ratio measured in one run.

    python benchmarks/chain_speed.py                      # S in 8 16 32 64, T = S, B = 32, V = 4000, O = 256
    python benchmarks/chain_speed.py --sources 16 64 --vocab 8000

Writes ``benchmarks/results/chain_speed.{md,json}`` with the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from harness import RESULTS, command_line, table, write_results
from varattn.latent.chain import chain_forward, jump_buckets
from varattn.modules.enumeration import enumerate_blockwise


def inputs(batch: int, steps: int, sources: int, vocab: int, width: int, generator: torch.Generator) -> dict:
    """Random model quantities of one batch, leaves that need gradients."""
    def leaf(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).requires_grad_()

    return {"rows": leaf(batch * steps, width, scale=0.5), "memory": leaf(batch, sources, width, scale=0.5),
            "row_batch": torch.arange(batch).repeat_interleave(steps),
            "targets": torch.randint(0, vocab, (batch * steps,), generator=generator),
            "weight": leaf(vocab, width, scale=width ** -0.5), "bias": leaf(vocab, scale=0.0),
            "prior": leaf(batch, steps, sources), "jump_table": leaf(2 * 8 + 1, scale=0.1)}


def run_enumeration(x: dict, block: int) -> torch.Tensor:
    return enumerate_blockwise(x["rows"], x["memory"], x["row_batch"], x["targets"], x["weight"], x["bias"], block)


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(batch: int, sources: int, vocab: int, width: int, repeats: int, block: int) -> dict:
    steps = sources
    generator = torch.Generator().manual_seed(sources)
    x = inputs(batch, steps, sources, vocab, width, generator)
    buckets = jump_buckets(sources, 8)                                   # [S + 1, S] bucket ids
    mask = torch.ones(batch, sources, dtype=torch.bool)
    real = torch.ones(batch, steps, dtype=torch.bool)
    emissions = run_enumeration(x, block).detach().view(batch, steps, sources).requires_grad_()
    prior = x["prior"]

    def enumeration():
        run_enumeration(x, block).sum().backward()

    def independent():
        torch.logsumexp(prior.log_softmax(-1) + emissions, -1).sum().backward()

    def chain():
        jumps = x["jump_table"][buckets][None]                          # [1, S + 1, S]
        chain_forward(emissions, prior, jumps, mask, real).increments.sum().backward()

    parts = {"enumeration": enumeration, "independent": independent, "chain": chain}
    for function in parts.values():                                      # warm-up
        function()
    seconds = {name: [] for name in parts}
    for _ in range(repeats):
        for name, function in parts.items():
            seconds[name].append(timed(function))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    return {"batch": batch, "steps": steps, "sources": sources, "vocab": vocab, "width": width,
            "median_ms": {k: round(v * 1000, 3) for k, v in median.items()},
            "chain_over_enumeration": round(median["chain"] / median["enumeration"], 4),
            "chain_over_independent": round(median["chain"] / median["independent"], 2),
            "step_ratio": round((median["enumeration"] + median["chain"])
                                / (median["enumeration"] + median["independent"]), 4)}


def rows_table(rows: list[dict]) -> str:
    return table(["S = T", "enumeration (ms)", "independent (ms)", "chain (ms)", "chain / enumeration",
                  "hmm step / marginal step"],
                 [[row["sources"], f"{row['median_ms']['enumeration']:.1f}", f"{row['median_ms']['independent']:.2f}",
                   f"{row['median_ms']['chain']:.2f}", f"{row['chain_over_enumeration']:.3f}",
                   f"{row['step_ratio']:.3f}"] for row in rows], align="rrrrrr")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=4000)
    parser.add_argument("--width", type=int, default=256, help="O, the output layer's input width")
    parser.add_argument("--block", type=int, default=64, help="target tokens per enumeration block")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--results", default=str(RESULTS / "chain_speed"))
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rows = []
    for sources in args.sources:
        rows.append(measure(args.batch, sources, args.vocab, args.width, args.repeats, args.block))
        print(json.dumps(rows[-1]), flush=True)
    text = (f"# The chain's cost beside the enumeration (mode hmm vs marginal)\n\n"
            f"B = {args.batch} sentences, T = S, V = {args.vocab}, O = {args.width}; forward + backward, "
            f"median of {args.repeats} interleaved repetitions.\n\n{rows_table(rows)}\n\n"
            f"Load average {os.getloadavg()[0]:.1f} at the end: the machine is shared, read the ratios.\n")
    write_results(args.results, {"rows": rows}, text, command=command_line(__file__, argv))
    print(text)


if __name__ == "__main__":
    main()

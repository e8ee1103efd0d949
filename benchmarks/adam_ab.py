"""Adam's update on CPU: PyTorch's default implementation against ``foreach=True`` and ``fused=True``
(issue 16: "fused ops"), on the parameters of the 256-wide and the paper-size ``vae-enum`` model.

All three optimizers hold the same parameters and gradients (random, fixed), and take turns round by
round in one process with one thread; each round times ``--steps`` updates per variant. Prints the
median milliseconds per update and each variant's speed-up over the default (median and range), then the
command, commit, machine and date.

    python benchmarks/adam_ab.py --rounds 8 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from harness import footer, stamp
from workloads import SIZES  # the same model sizes as the step A/B

VARIANTS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=SIZES, nargs="+", default=["256", "paper"])
    parser.add_argument("--vocab", type=int, default=8000, help="source and target vocabulary size")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from varattn.config import ModelConfig
    from varattn.models.seq2seq import Seq2Seq

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread, {args.rounds} rounds of {args.steps} updates per variant")
    for setting in args.setting:
        torch.manual_seed(1)
        model = Seq2Seq(ModelConfig(mode="vae-enum", **SIZES[setting]), args.vocab, args.vocab)
        count = sum(p.numel() for p in model.parameters())
        grads = [torch.randn_like(p) * 1e-3 for p in model.parameters()]
        copies = {}
        for name, options in VARIANTS.items():
            params = [p.detach().clone().requires_grad_() for p in model.parameters()]
            for p, g in zip(params, grads):
                p.grad = g.clone()
            copies[name] = (params, torch.optim.Adam(params, lr=1e-3, **options))
        seconds = {name: [] for name in VARIANTS}
        for number in range(args.rounds + 1):  # round 0 warms up (state allocation)
            order = list(VARIANTS) if number % 2 else list(reversed(VARIANTS))
            for name in order:
                optimizer = copies[name][1]
                start = time.perf_counter()
                for _ in range(args.steps):
                    optimizer.step()
                if number:
                    seconds[name].append((time.perf_counter() - start) / args.steps)
        reference = copies["default"][0]
        for name in ("foreach", "fused"):
            for a, b in zip(reference, copies[name][0]):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        print(f"\n{setting}: {count / 1e6:.1f}M parameters")
        for name in VARIANTS:
            ratios = [d / s for d, s in zip(seconds["default"], seconds[name])]
            print(f"  {name:8s} {statistics.median(seconds[name]) * 1000:7.2f} ms per update; speed-up over "
                  f"default: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")
    print("\n" + footer(stamp({})), end="")


if __name__ == "__main__":
    main()

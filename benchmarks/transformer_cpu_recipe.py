"""Sizing the Transformer recipe for one CPU core (issue 24, item 3): training-step speed of recipe variants
on full Multi30k training batches, interleaved, one thread.

Each variant is the recipe (``configs/multi30k/transformer.yaml`` unless ``--recipe``) with overrides. Every
round trains each variant in turn (forward, the mode's objective, backward, clipping, Adam: what ``varattn
train`` does, under the variant's autocast), the first variant alternating, so a busy machine slows them
alike; variants of one ``data.max_tokens`` step on the same batches, and a variant with smaller batches
steps on proportionally more of them (about ``--steps`` batches of the largest size per round). Rates are medians over rounds of target tokens (EOS included) per second;
minutes per epoch are the epoch's target tokens over that rate (validation not included).

    python benchmarks/transformer_cpu_recipe.py --rounds 3 --steps 2 \\
        --variant "soft fp32=model.mode=soft" --variant "soft bf16=model.mode=soft train.cpu_bf16=true"

Needs the prepared folder of the recipe (``varattn prepare multi30k ... --bpe-merges 10000``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from harness import RESULTS, ROOT, command_line, table, write_results
from varattn.data.text.batching import TokenBatcher, collate
from varattn.device import autocast
from varattn.models.registry import build_translation_model
from varattn.tasks.translation import batch_loss
from workloads import recipe_variants


class Variant:
    """One recipe variant: its model, optimizer and autocast, stepped on given batches."""

    def __init__(self, name: str, config, src_vocab: int, tgt_vocab: int):
        self.name, self.config = name, config
        torch.manual_seed(config.train.seed)
        self.model = build_translation_model(config, src_vocab, tgt_vocab).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr,
                                          betas=(config.train.adam_beta1, config.train.adam_beta2))
        self.generator = torch.Generator().manual_seed(config.train.seed)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        self.autocast = lambda: autocast(torch.device("cpu"), config.train.bf16, config.train.cpu_bf16)

    def step(self, batch) -> float:
        start = time.perf_counter()
        with self.autocast():
            loss, _ = batch_loss(self.model, batch, self.generator, self.config.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip_norm)
        self.optimizer.step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "multi30k" / "transformer.yaml"))
    parser.add_argument("--variant", action="append", required=True, help="'NAME=override override ...'")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="batches per variant per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds per variant first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="transformer_cpu_recipe")
    args = parser.parse_args()
    torch.set_num_threads(1)
    configs, overrides, data = recipe_variants(args.recipe, args.variant)
    split = data.split("train")
    epoch_tokens = int(split.tgt_lengths.sum()) + len(split.tgt_lengths)
    largest = max(config.data.max_tokens for config in configs.values())
    rng = np.random.default_rng(args.seed)
    variants, plans, epoch_batches = [], {}, {}
    for name, config in configs.items():
        variant = Variant(name, config, len(data.src_vocab), len(data.tgt_vocab))
        size = config.data.max_tokens
        if size not in epoch_batches:  # variants of one batch size step on the same batches
            order = TokenBatcher(split.src_lengths, split.tgt_lengths, size, seed=args.seed).batches(0)
            per_round = max(1, round(args.steps * largest / size))
            chosen = rng.choice(len(order), size=per_round * (args.warmup + args.rounds), replace=False)
            epoch_batches[size] = (len(order), per_round, [collate(split, order[i]) for i in chosen])
        variants.append(variant)
        plans[name] = epoch_batches[size]
    for variant in variants:
        _, per_round, batches = plans[variant.name]
        for batch in batches[:per_round * args.warmup]:
            variant.step(batch)
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    loads = []
    for r in range(args.rounds):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for variant in order:
            _, per_round, batches = plans[variant.name]
            todo = batches[(args.warmup + r) * per_round:(args.warmup + r + 1) * per_round]
            seconds = sum(variant.step(b) for b in todo)
            rates[variant.name].append(sum(int(b.tgt_lengths.sum()) for b in todo) / seconds)
        loads.append(os.getloadavg()[0])
    base = statistics.median(rates[variants[0].name])
    rows = []
    for variant in variants:
        rate = statistics.median(rates[variant.name])
        rows.append({"variant": variant.name, "overrides": overrides[variant.name],
                     "mode": variant.config.model.mode, "parameters": variant.parameters,
                     "tokens_per_s": rate, "minutes_per_epoch": epoch_tokens / rate / 60,
                     "ratio_to_first": rate / base, "rounds": rates[variant.name],
                     "max_tokens": variant.config.data.max_tokens, "epoch_batches": plans[variant.name][0],
                     "batches_per_round": plans[variant.name][1]})
    record = {"recipe": os.path.relpath(args.recipe, ROOT),
              "epoch_target_tokens": epoch_tokens, "rounds": args.rounds, "steps": args.steps,
              "load_average": [min(loads), max(loads)], "rows": rows}
    markdown = "\n".join([
        f"Training-step speed of `{record['recipe']}` variants on full Multi30k training batches "
        f"({epoch_tokens:,} target tokens an epoch), one thread, {args.rounds} rounds, interleaved; each round "
        f"steps every variant on about {args.steps} batches of the largest size (more of smaller ones: "
        "variants of one batch size share their batches); minutes per epoch exclude validation.", "",
        table(["variant", "overrides", "parameters", "batch tokens", "updates / epoch", "target tok/s",
               "min / epoch", f"× {variants[0].name}"],
              [[r["variant"], "`" + " ".join(r["overrides"]) + "`", f"{r['parameters'] / 1e6:.2f} M",
                f"{r['max_tokens']:,}", f"{r['epoch_batches']:,}", f"{r['tokens_per_s']:,.0f}",
                f"{r['minutes_per_epoch']:.1f}", f"{r['ratio_to_first']:.2f}"] for r in rows]),
        "", f"Load average (1 min) over the rounds: {min(loads):.2f}–{max(loads):.2f}."])
    write_results(RESULTS / args.out, record, markdown, command=command_line(__file__))
    print(markdown)


if __name__ == "__main__":
    main()

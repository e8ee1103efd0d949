"""Why ``vae-enum`` in the Transformer stays at its uniform start (issue 24, item 2): the first steps of
recipe variants on full Multi30k, measured as they train.

Each variant is the recipe (``configs/multi30k/transformer.yaml`` unless ``--recipe``) with overrides and
trains on the same training batches (one epoch's order, seed 1), one thread. Every ``--every`` steps, on
fixed validation batches in eval mode (float32):

- ``prior H``, ``q H``: mean entropy (nats) of the prior p(z_t | x, y_<t) and of q(z_t | x, y);
- ``post H``: of the exact posterior p(z_t | x, y_≤t) ∝ p(z_t) p(y_t | z_t), what q should approach;
- ``KL``: mean KL(q || p) per token; ``log-lik spread``: mean over tokens of max_s ℓ(s) − mean_s ℓ(s),
  ℓ(s) = log p(y_t | z_t = s): how much the word's probability depends on the aligned position, i.e. how
  much of the source the likelihood does *not* already get through the side channel;
- ``grad prior / q / output``: the norms of the last training step's gradients (before clipping) of the
  prior's parameters (the alignment head), the inference network, and the output layer.

    python benchmarks/vae_enum_start.py --steps 80 --every 20 \\
        --variant "vae-enum=model.mode=vae-enum" --variant "marginal=model.mode=marginal"

``--curves NAME=RUN_DIR ...`` instead tabulates finished ``varattn train`` runs: each validation record of
their ``log.jsonl`` (exact PPL, ELBO PPL, KL, prior entropy by step), with the run's overrides, into
``benchmarks/results/vae_enum_epoch1.{md,json}`` (``--out``). ``--probe-runs NAME=RUN_DIR ...`` probes
finished runs' last checkpoints on ``--probe-batches`` validation batches: the entropies above, KL(q‖p) and
KL(q*‖p) of the exact posterior q* (the most any q could carry), into ``vae_enum_probe.{md,json}``. A mode
with a warm-up (vae-enum's exact start) runs it for ``train.warmup_steps`` steps here as in training.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import harness
from harness import RESULTS, ROOT, command_line, table, write_results
from varattn import latent
from varattn.data.text.batching import TokenBatcher, collate
from varattn.device import autocast
from varattn.models.registry import build_translation_model
from varattn.tasks.translation import batch_loss
from workloads import recipe_variants


def entropy(log_probs: torch.Tensor) -> torch.Tensor:
    return -(log_probs.exp() * log_probs).nan_to_num().sum(-1)


@torch.no_grad()
def probe(model, batches) -> dict:
    """The figures of the module docstring, token-weighted means over ``batches``."""
    model.eval()
    sums = {"prior_entropy": 0.0, "posterior_entropy": 0.0, "q_entropy": 0.0, "kl": 0.0, "spread": 0.0,
            "exact_kl": 0.0}
    count, has_q = 0, False
    for batch in batches:
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        real = out.query_weights
        log_prior = latent.masked_log_softmax(out.prior.float(), out.mask)
        emission = out.likelihood.enumerate().float()  # [B, T, S]
        mask = out.mask.expand_as(emission)
        log_post = torch.log_softmax((log_prior + emission).masked_fill(~mask, -torch.inf), -1)
        mean_emission = (emission * mask).sum(-1) / mask.sum(-1)
        spread = emission.masked_fill(~mask, -torch.inf).amax(-1) - mean_emission
        sums["prior_entropy"] += entropy(log_prior)[real].sum().item()
        sums["posterior_entropy"] += entropy(log_post)[real].sum().item()
        sums["exact_kl"] += (log_post.exp() * (log_post - log_prior)).nan_to_num().sum(-1)[real].sum().item()
        sums["spread"] += spread[real].sum().item()
        if out.posterior is not None:
            has_q = True
            log_q = latent.masked_log_softmax(out.posterior.float(), out.mask)
            sums["q_entropy"] += entropy(log_q)[real].sum().item()
            sums["kl"] += (log_q.exp() * (log_q - log_prior)).nan_to_num().sum(-1)[real].sum().item()
        count += int(real.sum())
    model.train()
    result = {k: v / count for k, v in sums.items()}
    if not has_q:
        result["q_entropy"] = result["kl"] = None
    return result


def grad_norm(module) -> float | None:
    if module is None:
        return None
    grads = [p.grad.float().norm() for p in module.parameters() if p.grad is not None]
    return torch.stack(grads).norm().item() if grads else 0.0


def train_variant(name: str, config, data, train_batches, probe_batches, every: int, log) -> dict:
    torch.manual_seed(config.train.seed)
    model = build_translation_model(config, len(data.src_vocab), len(data.tgt_vocab)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr,
                                 betas=(config.train.adam_beta1, config.train.adam_beta2))
    generator = torch.Generator().manual_seed(config.train.seed)
    curve = [{"step": 0, **probe(model, probe_batches), "grad_prior": None, "grad_q": None, "grad_output": None}]
    log(name, curve[-1])
    started = time.perf_counter()
    warming_up = latent.get_mode(config.model.mode).warmup
    for step, batch in enumerate(train_batches, 1):
        with autocast(torch.device("cpu"), config.train.bf16, config.train.cpu_bf16):
            loss, _ = batch_loss(model, batch, generator, config.model, warming_up and step <= config.train.warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = {"grad_prior": grad_norm(model.align), "grad_q": grad_norm(model.inference),
                 "grad_output": grad_norm(model.output)}
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.clip_norm)
        optimizer.step()
        if step % every == 0 or step == len(train_batches):
            curve.append({"step": step, **probe(model, probe_batches), **grads})
            log(name, curve[-1])
    return {"variant": name, "seconds": time.perf_counter() - started, "curve": curve}


def fmt(value, spec=".3f") -> str:
    return "–" if value is None else format(value, spec)


def curves(specs: list[str], out: str) -> None:
    """Tabulate the validation records of finished runs (see the module docstring)."""
    import yaml

    runs, rows = [], []
    for spec in specs:
        name, _, folder = spec.partition("=")
        folder = Path(folder)
        records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
        config = yaml.safe_load((folder / "config.yaml").read_text())
        runs.append({"run": name, "dir": harness.rel(folder), "mode": config["model"]["mode"],
                     "posterior_param": config["model"]["posterior_param"],
                     "cross_attention": config["transformer"]["cross_attention"],
                     "max_tokens": config["data"]["max_tokens"], "lr": config["train"]["lr"],
                     "warmup_steps": config["train"]["warmup_steps"], "records": records})
        for r in records:
            rows.append([name, r["epoch"], r["step"], f"{r['ppl']:.1f}", fmt(r.get("elbo_ppl"), ".1f"),
                         fmt(r.get("kl"), ".5f"), f"{r['entropy']:.3f}"])
    markdown = "\n".join([
        "Validation (1,014 pairs, float32) during the first epochs of `configs/multi30k/transformer.yaml` runs "
        "(`train.validate_every` a quarter of an epoch; each run's settings below), one thread; prior entropy "
        "in nats (uniform over the validation sources: 2.69). Warm-up = `train.warmup_steps` of vae-enum's "
        "exact start.", "",
        table(["run", "epoch", "step", "exact PPL", "ELBO PPL", "KL", "prior entropy"], rows), "",
        "Runs: " + "; ".join(f"{r['run']}: mode {r['mode']}, posterior_param {r['posterior_param']}, "
                             f"cross_attention {r['cross_attention']}, batches of {r['max_tokens']} tokens, "
                             f"lr {r['lr']}, warm-up {r['warmup_steps']} steps (`{r['dir']}`)" for r in runs)])
    write_results(RESULTS / out, {"runs": runs}, markdown, command=command_line(__file__))
    print(markdown)


def probe_runs(specs: list[str], batches: int, out: str) -> None:
    """Probe finished runs' last checkpoints on validation batches (see the module docstring)."""
    from varattn.data.text.prepared import load_prepared
    from varattn.training.runs import load_run

    rows, records = [], []
    for spec in specs:
        name, _, folder = spec.partition("=")
        run = load_run(folder, torch.device("cpu"), prefer="checkpoint_last")
        folder_data = run.config.data.dir
        data = load_prepared(folder_data if os.path.isabs(folder_data) else ROOT / folder_data)
        valid = data.split("valid")
        fixed = TokenBatcher(valid.src_lengths, valid.tgt_lengths, run.config.data.max_tokens, shuffle=False).batches()
        chosen = [collate(valid, b) for b in fixed[::max(1, len(fixed) // batches)][:batches]]
        point = probe(run.model, chosen)
        records.append({"run": name, "dir": folder, **point})
        rows.append([name, f"`{folder}`", fmt(point["prior_entropy"]), fmt(point["q_entropy"]),
                     fmt(point["posterior_entropy"]), fmt(point["kl"], ".4f"), fmt(point["exact_kl"], ".4f"),
                     fmt(point["spread"])])
    markdown = "\n".join([
        f"Finished runs' last checkpoints probed on {batches} fixed validation batches in float32: entropies "
        "of the prior p, the inference network's q and the exact posterior q* ∝ p e^ℓ, KL(q‖p) (what "
        "the model reports), KL(q*‖p) (what y_t tells about z_t under the model: the most any q could carry) "
        "and the likelihood's spread max_s ℓ(s) − mean_s ℓ(s), nats per target token.", "",
        table(["run", "folder", "prior H", "q H", "exact posterior H", "KL(q‖p)", "KL(q*‖p)", "log-lik spread"],
              rows)])
    write_results(RESULTS / out, {"runs": records}, markdown, command=command_line(__file__))
    print(markdown, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "multi30k" / "transformer.yaml"))
    parser.add_argument("--variant", action="append", help="'NAME=override override ...'")
    parser.add_argument("--curves", nargs="+", metavar="NAME=RUN_DIR", help="tabulate finished runs instead")
    parser.add_argument("--probe-runs", nargs="+", metavar="NAME=RUN_DIR", help="probe finished runs instead")
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--probe-batches", type=int, default=2)
    parser.add_argument("--out", default="vae_enum_start")
    args = parser.parse_args()
    if args.probe_runs:
        torch.set_num_threads(1)
        return probe_runs(args.probe_runs, args.probe_batches, args.out if args.out != "vae_enum_start" else "vae_enum_probe")
    if args.curves:
        return curves(args.curves, args.out if args.out != "vae_enum_start" else "vae_enum_epoch1")
    if not args.variant:
        parser.error("--variant or --curves is needed")
    torch.set_num_threads(1)
    configs, overrides, data = recipe_variants(args.recipe, args.variant)
    first = next(iter(configs.values()))
    train, valid = data.split("train"), data.split("valid")
    order = TokenBatcher(train.src_lengths, train.tgt_lengths, first.data.max_tokens, seed=first.train.seed).batches(1)
    train_batches = [collate(train, b) for b in order[:args.steps]]
    fixed = TokenBatcher(valid.src_lengths, valid.tgt_lengths, first.data.max_tokens, shuffle=False).batches()
    probe_batches = [collate(valid, b) for b in fixed[::max(1, len(fixed) // args.probe_batches)][:args.probe_batches]]
    results = []

    def log(name, point):
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in point.items()}, flush=True)

    def write():
        rows = [[r["variant"], "`" + " ".join(overrides[r["variant"]]) + "`", p["step"], fmt(p["prior_entropy"]),
                 fmt(p["q_entropy"]), fmt(p["posterior_entropy"]), fmt(p["kl"], ".4f"), fmt(p["spread"]),
                 fmt(p["grad_prior"], ".4f"), fmt(p["grad_q"], ".4f"), fmt(p["grad_output"], ".4f")]
                for r in results for p in r["curve"]]
        markdown = "\n".join([
            f"The first {args.steps} training steps of `{os.path.relpath(args.recipe, ROOT)}` variants on full "
            f"Multi30k (one epoch's batch order, seed {first.train.seed}), one thread; probed every {args.every} "
            f"steps on {len(probe_batches)} fixed validation batches in float32. Entropies and KL in nats per "
            "target token (uniform over the source: the mean log |x|); log-lik spread = mean over tokens of "
            "max_s ℓ(s) − mean_s ℓ(s); gradient norms are the step's, before clipping.", "",
            table(["variant", "overrides", "step", "prior H", "q H", "post H", "KL", "log-lik spread",
                   "grad prior", "grad q", "grad output"], rows)])
        write_results(RESULTS / args.out, {"recipe": os.path.relpath(args.recipe, ROOT), "steps": args.steps,
                                           "every": args.every, "results": results}, markdown,
                      command=command_line(__file__))
        print(markdown, flush=True)

    for name, config in configs.items():
        results.append(train_variant(name, config, data, train_batches, probe_batches, args.every, log))
        write()


if __name__ == "__main__":
    main()

"""Why ``vae-sample`` stays near uniform at CPU scale (issue 16): gradient checks and learning curves.

``check`` (seconds): on a real Multi30k batch and a small model (dropout off):

1. the likelihood at one-hot weights equals the enumeration, ℓ(e_s) = enumerate()[s];
2. the mean of ``vae-sample``'s surrogate gradient over many draws equals ``vae-enum``'s exact gradient,
   for every parameter tensor (unbiasedness at the model level, through the whole network);
3. how much signal one step's estimate carries: the cosine between a K-sample estimate and the exact
   gradient, for the inference network's parameters (where REINFORCE acts) and for the rest, K = 1, 5,
   with the library's baseline ℓ(E_p z) and, for comparison, without one.

``curves``: short training runs on the Multi30k CPU-scale setting of ``multi30k_modes.py`` (pairs <= 15
BPE tokens, the same model) with validation every ``--every`` steps, one variant at a time:

    python benchmarks/vae_sample.py check --data /tmp/m30k15
    python benchmarks/vae_sample.py curves --data /tmp/m30k15 --variants before enum k5 lr3 b200 --steps 3000

Writes ``benchmarks/results/vae_sample.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import workloads
from harness import RESULTS, footer, stamp, write_json, write_results, write_text
from workloads import CURVE_SIZES as SIZES, CURVE_TRAIN as TRAIN, curves_table, model_and_batch as _model_and_batch

VARIANTS = {  # name -> (mode, overrides on top of TRAIN)
    "before": ("vae-sample", {}),
    "enum": ("vae-enum", {}),
    "k5": ("vae-sample", {"model.samples": 5}),
    "k10": ("vae-sample", {"model.samples": 10}),
    "lr3": ("vae-sample", {"train.lr": 0.003}),
    "b200": ("vae-sample", {"data.max_tokens": 200}),
    "enum-lr3": ("vae-enum", {"train.lr": 0.003}),
    "lr3-k5": ("vae-sample", {"train.lr": 0.003, "model.samples": 5}),
    "lr3-k10": ("vae-sample", {"train.lr": 0.003, "model.samples": 10}),
    "lr3-b200": ("vae-sample", {"train.lr": 0.003, "data.max_tokens": 200}),
    # after the fix (one output-layer dropout mask per token, shared by its samples and the baseline):
    # the same settings as "lr3" and "before", run with the fixed code
    "lr3-shared": ("vae-sample", {"train.lr": 0.003}),
    "lr3-k5-shared": ("vae-sample", {"train.lr": 0.003, "model.samples": 5}),
    "shared": ("vae-sample", {}),
    # the other sampled and relaxed modes, and soft, at the same settings (with the fix)
    "soft-lr3": ("soft", {"train.lr": 0.003}),
    "hard-sample-lr3": ("hard-sample", {"train.lr": 0.003}),
    "gumbel-lr3": ("vae-gumbel", {"train.lr": 0.003}),
    "gumbel-t05-lr3": ("vae-gumbel", {"train.lr": 0.003, "model.temperature": 0.5}),
    "rws-lr3": ("vae-rws", {"train.lr": 0.003, "model.samples": 5}),  # the recipe's K
    "dirichlet-lr3": ("vae-dirichlet", {"train.lr": 0.003, "train.warmup_steps": 500}),
}


# ----------------------------------------------------------------------------- check


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def check(args) -> dict:
    from varattn import latent

    torch.set_num_threads(1)
    model, batch = _model_and_batch(Path(args.data), args.pairs, args.seed, args.run)
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    inference = [i for i, n in enumerate(names) if n.startswith("inference.")]

    def forward():
        return model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)

    def grad_of(mode: str, samples: int = 1, generator=None, baseline: bool = True):
        out = forward()
        if baseline:
            loss, _ = latent.batch_objective(latent.get_mode(mode), out, samples=samples, generator=generator)
        else:
            loss = _no_baseline_loss(out, samples, generator)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    # 1. one-hot likelihood = enumeration
    with torch.no_grad():
        out = forward()
        enumerated = out.likelihood.enumerate()
        sources = enumerated.size(-1)
        eye = torch.eye(sources, dtype=torch.float64)[None, None].expand(*enumerated.shape[:2], -1, -1)
        called = out.likelihood(eye)
    mask = out.mask.expand_as(enumerated) & out.query_weights[..., None].bool()
    one_hot_error = float((called - enumerated).abs()[mask].max())

    # 2. unbiasedness: mean over draws of the vae-sample gradient vs vae-enum's exact gradient
    exact = grad_of("vae-enum")
    generator = torch.Generator().manual_seed(args.seed)
    total = [torch.zeros_like(p) for p in params]
    started = time.perf_counter()
    for _ in range(args.draws):
        for acc, g in zip(total, grad_of("vae-sample", samples=args.samples_per_draw, generator=generator)):
            acc += g
    mean = [t / args.draws for t in total]
    per_tensor = []
    for name, m, e in zip(names, mean, exact):
        scale = float(e.norm())
        per_tensor.append({"parameter": name, "exact_norm": scale,
                           "relative_error": float((m - e).norm()) / scale if scale > 0 else None})
    draws = args.draws * args.samples_per_draw

    def cos(a, b):
        return float(torch.nn.functional.cosine_similarity(a, b, dim=0))

    overall = cos(_flat(mean), _flat(exact))

    # 3. signal of one step's REINFORCE estimate for q (the KL's gradient is exact and left out): cosine to
    # the exact ∇_φ -Σ_s q(s) ℓ(s), averaged over draws, for several baselines
    inference_params = [params[i] for i in inference]
    with torch.no_grad():
        prior_weights = latent.masked_log_softmax(out.prior, out.mask).exp()
        soft_baseline = out.likelihood(prior_weights[..., None, :])[..., 0]
    keep = out.query_weights.bool()

    def q_grad(loss_per_token):
        loss = loss_per_token.masked_fill(~keep, 0.0).sum() / keep.sum()
        return _flat(torch.autograd.grad(loss, inference_params))

    def log_q():
        return latent.masked_log_softmax(forward().posterior, out.mask)

    enumerated = enumerated.masked_fill(~out.mask.expand_as(enumerated), 0.0)
    exact_q = q_grad(-(log_q().exp() * enumerated).sum(-1))
    expected = (latent.masked_log_softmax(out.posterior, out.mask).exp() * enumerated).sum(-1)
    signal = []
    for samples in (1, 2, 5, 10):
        baselines = {"none": None, "ℓ(E_p z) (library)": soft_baseline, "E_q ℓ (enumerated; reference)": expected}
        if samples > 1:
            baselines["leave-one-out mean"] = "loo"
        for name, base in baselines.items():
            cosines = []
            for _ in range(args.cos_draws):
                lq = log_q()
                idx = latent.sample_categorical(lq, samples, generator)
                ell = enumerated.gather(-1, idx)                               # ℓ(z_k) [B, T, K]
                if base is None:
                    reward = ell
                elif isinstance(base, str):
                    reward = ell - (ell.sum(-1, keepdim=True) - ell) / (samples - 1)
                else:
                    reward = ell - base[..., None]
                cosines.append(cos(q_grad(-(reward * lq.gather(-1, idx)).mean(-1)), exact_q))
            signal.append({"samples": samples, "baseline": name, "cosine": sum(cosines) / len(cosines)})
            print(f"  K={samples:<2} baseline {name:32s} cosine {signal[-1]['cosine']:.3f}", flush=True)
    with torch.no_grad():
        spread = (enumerated - expected[..., None]).masked_fill(~out.mask.expand_as(enumerated), 0.0)
        q = latent.masked_log_softmax(out.posterior, out.mask).exp()
        std = ((q * spread**2).sum(-1)[keep]).sqrt().mean()
        gap = (soft_baseline - expected)[keep]
    state = {"q_entropy": float(latent.entropy(out.posterior, out.mask)[keep].mean()),
             "prior_entropy": float(latent.entropy(out.prior, out.mask)[keep].mean()),
             "std_of_ell_under_q": float(std), "baseline_minus_E_q_ell_mean": float(gap.mean()),
             "baseline_minus_E_q_ell_abs_mean": float(gap.abs().mean())}
    # the dropout noise of ℓ (training mode, the runs' dropout): two calls draw independent output-layer
    # masks, as a sample and its baseline did before the masks were shared within a call
    noisy, _ = _model_and_batch(Path(args.data), args.pairs, args.seed, args.run, dropout=TRAIN["model.dropout"])
    noisy.train()
    with torch.no_grad():
        out_d = noisy(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        first, second = out_d.likelihood(eye), out_d.likelihood(eye)
        cells = out_d.mask.expand_as(first) & out_d.query_weights[..., None].bool()
        state["dropout_noise_std_of_ell"] = float(((first - second)[cells] ** 2).mean().sqrt() / 2**0.5)
    print("  state:", state, flush=True)
    return {"pairs": args.pairs, "target_tokens": int(out.query_weights.sum()),
            "one_hot_vs_enumeration_max_abs_error": one_hot_error,
            "draws": draws, "cosine_mean_vs_exact": overall, "per_tensor": per_tensor,
            "signal": signal, "state": state, "run": args.run, "seconds": time.perf_counter() - started}


def _no_baseline_loss(out, samples: int, generator) -> torch.Tensor:
    """vae-sample's surrogate with no baseline (reward ℓ(z)): for comparison only."""
    from varattn import latent

    log_q = latent.masked_log_softmax(out.posterior, out.mask)
    log_p = latent.masked_log_softmax(out.prior, out.mask)
    idx = latent.sample_categorical(log_q.masked_fill(~out.mask, float("-inf")), samples, generator)
    one_hot = torch.nn.functional.one_hot(idx, log_q.size(-1)).to(log_q.dtype)
    ell = out.likelihood(one_hot)
    log_q_z = log_q.gather(-1, idx)
    kl = latent.categorical_kl(out.posterior, out.prior, out.mask)
    per_token = (-ell - ell.detach() * log_q_z).mean(-1) + kl
    keep = out.query_weights.bool()
    del log_p
    return per_token.masked_fill(~keep, 0.0).sum() / keep.sum()


# ----------------------------------------------------------------------------- curves


def curve(args, variant: str) -> dict:
    mode, extra = VARIANTS[variant]
    return workloads.curve(variant, mode, extra, args.data, args.work, args.steps, args.every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("check")
    p.add_argument("--data", required=True, help="prepared Multi30k folder (multi30k_modes.py's settings)")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--draws", type=int, default=400)
    p.add_argument("--samples-per-draw", type=int, default=50)
    p.add_argument("--cos-draws", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--run", default=None, help="load this run's weights (checkpoint_last) instead of a fresh model")
    p.add_argument("--out", default=str(RESULTS / "vae_sample_check"))
    p = sub.add_parser("curves")
    p.add_argument("--data", required=True)
    p.add_argument("--work", default="/tmp/vae_sample_curves")
    p.add_argument("--variants", nargs="+", default=["before", "enum", "k5", "lr3", "b200"], choices=VARIANTS)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--results", default=str(RESULTS / "vae_sample"))
    args = parser.parse_args()
    out = Path(args.results if args.what == "curves" else args.out)
    if args.what == "check":
        result = check(args)
        result = write_results(out.with_suffix(""), result, threads=1)  # stamped: command, commit, machine, date
        print(json.dumps({k: v for k, v in result.items() if k != "per_tensor"}, indent=1))
        worst = max((t for t in result["per_tensor"] if t["relative_error"] is not None),
                    key=lambda t: t["relative_error"])
        print("worst tensor:", worst)
        return
    results = [curve(args, v) for v in args.variants]
    # the JSON stays a list of curves; the markdown ends with the command, commit, machine and date
    write_json(out.with_suffix(".json"), results)
    text = ("Validation exact PPL / prior entropy / KL every "
            f"{args.every} steps (Multi30k, pairs <= 15 BPE tokens)\n\n" + curves_table(results) + "\n")
    write_text(out.with_suffix(".md"), text + "\n" + footer(stamp({}, threads=1)))
    print(text)


if __name__ == "__main__":
    main()

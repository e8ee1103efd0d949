"""Why ``vae-dirichlet`` with the paper's independent q stays at a uniform prior at CPU scale, and what the
residual q does instead (issue 16): learning curves of its variants and probes.

Same setting and runner as ``vae_sample.py curves`` (Multi30k, pairs <= 15 BPE tokens, the same model,
lr 3e-3, validation every ``--every`` steps), one variant at a time:

    python benchmarks/vae_dirichlet.py --data /tmp/i16/m30k15 --variants w500 w0 w2000 w500-lr1 --steps 2000

``--probe`` instead prints three checks (seconds to a minute, no training):

1. the reparameterised Dirichlet gradient against a closed form: d/dlogα E[Σ c_s z_s²] (E[z_s²] =
   α_s(α_s+1)/(α_0(α_0+1))) by 4·10⁵ draws, and the library KL against ``torch.distributions``;
2. ``--run RUN`` (a vae-dirichlet run): the ELBO per token along an oracle direction (raise the
   posterior log-α of argmax_s ℓ(e_s) by t), beside the categorical ELBO (vae-enum's) at the same scores;
3. ``--gumbel-run RUN``: the cosine between one-draw ``vae-gumbel`` gradients of the inference network
   and ``vae-enum``'s exact gradient, τ = 0.1, 0.5, 1.

``--concentrations RUN`` (a trained vae-dirichlet run, ``--data`` its prepared folder) prints the prior's
log-concentrations, its total concentration per token, the share at the clamp, and the inference
network's offsets δ = log α_q − log α_p, on the first 300 validation pairs.

Writes ``benchmarks/results/vae_dirichlet_curves.{json,md}``; the diagnosis is in
``benchmarks/results/vae_dirichlet.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import workloads
from harness import RESULTS, footer, stamp, write_json, write_text
from workloads import curves_table, model_and_batch

LR = {"train.lr": 0.003}
PAPER_Q = {"model.posterior_param": "independent"}  # the form these variants were measured with
VARIANTS = {  # name -> (mode, overrides on top of workloads.CURVE_TRAIN)
    "w500": ("vae-dirichlet", {**LR, **PAPER_Q, "train.warmup_steps": 500}),
    "w0": ("vae-dirichlet", {**LR, **PAPER_Q, "train.warmup_steps": 0}),
    "w2000": ("vae-dirichlet", {**LR, **PAPER_Q, "train.warmup_steps": 2000}),
    "w500-lr1": ("vae-dirichlet", {"train.lr": 0.001, **PAPER_Q, "train.warmup_steps": 500}),
    "residual": ("vae-dirichlet", {**LR, "model.posterior_param": "residual", "train.warmup_steps": 0}),
}


def probe_gradient() -> None:
    import torch

    from varattn.latent.objectives import _dir_kl, _dirichlet_rsample

    c = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    eff = torch.ones(4, dtype=torch.bool)
    for start in ([0.0, 0.0, 0.0, 0.0], [0.3, -0.5, 1.2, 0.1], [2.0, -1.0, 0.5, 3.0]):
        la = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        z = _dirichlet_rsample(la, eff, 400000, torch.Generator().manual_seed(1))
        mc, = torch.autograd.grad((c * z ** 2).sum(-1).mean(), la)
        a = la.exp()
        exact, = torch.autograd.grad((c * a * (a + 1) / (a.sum() * (a.sum() + 1))).sum(), la)
        lp = torch.tensor([0.5, 0.5, -0.3, 1.0], dtype=torch.float64)
        ref = torch.distributions.kl_divergence(torch.distributions.Dirichlet(a.detach()),
                                                torch.distributions.Dirichlet(lp.exp()))
        print(f"log-alpha {start}: gradient MC {mc.numpy().round(4)} exact {exact.numpy().round(4)}; "
              f"KL {float(_dir_kl(la.detach(), lp, eff)):.6f} torch {float(ref):.6f}")


def probe_landscape(data: Path, run: str) -> None:
    import torch

    from varattn.latent import categorical_kl, masked_log_softmax
    from varattn.latent.objectives import _dir_kl, _dirichlet_rsample, _log_alpha

    model, batch = model_and_batch(data, 23, 1, run)
    with torch.no_grad():
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        en = out.likelihood.enumerate()
        eff, q = out.mask.expand_as(en), out.query_weights.bool()
        onehot = torch.nn.functional.one_hot(en.masked_fill(~eff, -1e9).argmax(-1), en.size(-1)).double()
        lq0, lp = out.posterior.masked_fill(~eff, 0.0), out.prior.masked_fill(~eff, 0.0)
        spread = en.masked_fill(~eff, 0.0)
        mean = spread.sum(-1, keepdim=True) / eff.sum(-1, keepdim=True)
        std = (((spread - mean) ** 2).masked_fill(~eff, 0.0).sum(-1) / eff.sum(-1)).sqrt()
        print(f"std over positions of l(e_s): {float(std[q].mean()):.3f} nats; prior/posterior log-alpha "
              f"mean {float(lp[eff].mean()):.2f}/{float(lq0[eff].mean()):.2f}")
        print("shift c of all log-alphas (q and p) | t | Dirichlet E_q l / KL / ELBO | categorical E_q l / KL / ELBO")
        for c in (0.0, -2.0, -4.0):
            for t in (0.0, 0.5, 1.0, 2.0, 3.0):
                la, lpc = _log_alpha(lq0 + t * onehot + c), _log_alpha(lp + c)
                ell = out.likelihood(_dirichlet_rsample(la, eff, 50, torch.Generator().manual_seed(0))).mean(-1)
                kl = _dir_kl(la, lpc, eff)
                cat = ""
                if c == 0.0:
                    lqc = masked_log_softmax(lq0 + t * onehot, out.mask)
                    ec = (lqc.exp() * en.masked_fill(~eff, 0.0)).sum(-1)
                    kc = categorical_kl(lq0 + t * onehot, lp, out.mask)
                    cat = f" | {float(ec[q].mean()):.3f} / {float(kc[q].mean()):.3f} / {float((ec - kc)[q].mean()):.3f}"
                print(f"{c:4.1f} | {t:.1f} | {float(ell[q].mean()):.3f} / {float(kl[q].mean()):.3f} / "
                      f"{float((ell - kl)[q].mean()):.3f}{cat}")


def probe_gumbel(data: Path, run: str | None, draws: int = 20) -> None:
    import torch

    from varattn import latent

    model, batch = model_and_batch(data, 23, 1, run)
    named = list(model.named_parameters())
    params = [p for n, p in named if n.startswith("inference.")]

    def grad(mode, **kw):
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        loss, _ = latent.batch_objective(latent.get_mode(mode), out, **kw)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])

    exact = grad("vae-enum")
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    for tau in (0.1, 0.5, 1.0):
        gs = [grad("vae-gumbel", temperature=tau, generator=generator) for _ in range(draws)]
        mean = torch.stack(gs).mean(0)
        print(f"{run or 'fresh model'} tau {tau}: cosine of one draw {sum(cos(g, exact) for g in gs) / draws:.3f}, "
              f"of the mean of {draws} {cos(mean, exact):.3f}; |one draw|/|exact| "
              f"{float(sum(g.norm() for g in gs) / draws / exact.norm()):.2f}")


def probe_concentrations(data: Path, run: str, pairs: int = 300) -> None:
    import torch

    from varattn.data.text.batching import collate
    from varattn.data.text.prepared import load_prepared
    from varattn.latent import LOG_ALPHA_MAX, LOG_ALPHA_MIN
    from varattn.training.runs import load_run

    model = load_run(Path(run), torch.device("cpu")).model.eval()
    split = load_prepared(data).split("valid")
    batch = collate(split, list(range(min(pairs, len(split)))))
    with torch.no_grad():
        out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
    mask = out.mask.expand_as(out.prior)
    real = mask & out.query_weights[..., None].bool()
    prior, offsets = out.prior[real], (out.posterior - out.prior)[real]
    total = out.prior.clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX).exp().masked_fill(~mask, 0.0).sum(-1)[out.query_weights.bool()]
    print(f"prior log-alpha: mean {prior.mean():.2f}, sd {prior.std():.2f}, max {prior.max():.2f}; "
          f"at the clamp: {float((prior > LOG_ALPHA_MAX).float().mean()):.4f} above, "
          f"{float((prior < LOG_ALPHA_MIN).float().mean()):.4f} below")
    print(f"total concentration per token: median {total.median():.0f} "
          f"(quartiles {total.quantile(0.25):.0f}-{total.quantile(0.75):.0f}); uniform Dir(1,...,1) would be "
          f"{float(mask.sum(-1)[out.query_weights.bool()].double().mean()):.1f}")
    print(f"inference offsets delta: sd {offsets.std():.4f}, max |delta| {offsets.abs().max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--work", default="/tmp/vae_dirichlet_curves")
    parser.add_argument("--variants", nargs="+", default=["w500", "w0"], choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--results", default=str(RESULTS / "vae_dirichlet_curves"))
    parser.add_argument("--probe", action="store_true", help="the gradient and landscape checks instead of curves")
    parser.add_argument("--run", default=None, help="--probe: a vae-dirichlet run to probe")
    parser.add_argument("--gumbel-run", default=None, help="--probe: a vae-gumbel run to probe")
    parser.add_argument("--concentrations", default=None, metavar="RUN",
                        help="print a trained vae-dirichlet run's concentrations and q's offsets (--data: its data)")
    args = parser.parse_args()
    if args.concentrations:
        import torch

        torch.set_num_threads(1)
        probe_concentrations(Path(args.data), args.concentrations)
        return
    if args.probe:
        import torch

        torch.set_num_threads(1)
        probe_gradient()
        if args.run:
            probe_landscape(Path(args.data), args.run)
        if args.gumbel_run:
            probe_gumbel(Path(args.data), args.gumbel_run)
        return
    results = [workloads.curve(v, *VARIANTS[v], args.data, args.work, args.steps, args.every)
               for v in args.variants]
    out = Path(args.results)
    # the JSON stays a list of curves; the markdown ends with the command, commit, machine and date
    write_json(out.with_suffix(".json"), results)
    write_text(out.with_suffix(".md"),
               "# vae-dirichlet curves: validation PPL (Monte-Carlo, 10 prior samples) / prior entropy / KL, "
               f"every {args.every} steps\n\n" + curves_table(results) + "\n\n" + footer(stamp({}, threads=1)))
    print(curves_table(results))


if __name__ == "__main__":
    main()

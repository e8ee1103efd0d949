"""Corpus-level scores of a translation model: perplexities, ELBO, KL, prior entropy.

Every number is a sum over real target tokens (``</s>`` included, padding excluded) divided by their
count, then exponentiated where it is a perplexity:

- ``ppl``: ``exp(-1/N Σ log Σ_s p(s) p(y_t | s))`` under the prior for latent models (exact
  enumeration; for ``vae-dirichlet`` a Monte-Carlo estimate ``log 1/K Σ_k p(y | z_k)``, z_k ~ Dir(α_p));
  for ``soft`` models ``exp`` of the mean NLL with the expected context.
- ``kmax_ppl[K]``: the same with the prior truncated to its K most probable positions, renormalised.
- ``elbo_ppl``, ``kl``: ``exp(1/N Σ (E_q[-log p(y|z)] + KL(q‖p)))`` and the mean KL, for models with q.
- ``entropy``: the prior's entropy in nats per target token.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from varattn import latent
from varattn.data.text.batching import TokenBatcher, collate
from varattn.models.seq2seq import Forward, Seq2Seq

ENUMERABLE_ELBO = "vae-enum"


def validation_metric(mode: str) -> str:
    """The metric that picks the best checkpoint and drives learning-rate decay (DESIGN §3)."""
    return "elbo_ppl" if mode.startswith("vae-") else "ppl"


def _token_sums(model: Seq2Seq, fwd: Forward, kmax: tuple[int, ...], generator: torch.Generator,
                samples: int) -> dict[str, torch.Tensor]:
    """Per-batch sums over real target tokens of every quantity; float64 scalars."""
    mode = model.config.mode
    keep = fwd.tgt_mask
    sums: dict[str, torch.Tensor] = {}

    def add(name: str, per_token: torch.Tensor) -> None:
        sums[name] = per_token.double().masked_fill(~keep, 0.0).sum()

    add("entropy", latent.entropy(fwd.prior, fwd.mask))
    if mode == "soft":
        add("nll", latent.objective("soft", fwd.likelihood, fwd.prior, mask=fwd.mask).nll)
        return sums
    if mode == "vae-dirichlet":
        weights = latent.dirichlet_rsample(fwd.prior, fwd.mask, samples=samples, generator=generator)
        log_lik = fwd.likelihood(weights)  # [B, T, K]
        add("nll", math.log(samples) - torch.logsumexp(log_lik, dim=-1))
        terms = latent.objective(mode, fwd.likelihood, fwd.prior, fwd.posterior, fwd.mask,
                                 samples=samples, generator=generator)
        add("elbo", terms.nll + terms.kl)
        add("kl", terms.kl)
        return sums
    enumerated = fwd.likelihood.enumerate()
    add("nll", -latent.log_marginal(enumerated, fwd.prior, fwd.mask))
    for k in kmax:
        add(f"kmax{k}", -torch.logsumexp(enumerated + latent.kmax_log_probs(fwd.prior, fwd.mask, k), -1))
    if fwd.posterior is not None:
        log_q = latent.masked_log_softmax(fwd.posterior, fwd.mask)
        reconstruction = -(log_q.exp() * enumerated.masked_fill(~fwd.mask, 0.0)).sum(-1)
        kl = latent.categorical_kl(fwd.posterior, fwd.prior, fwd.mask)
        add("elbo", reconstruction + kl)
        add("kl", kl)
    return sums


@torch.no_grad()
def score_split(model: Seq2Seq, split, device: torch.device, *, max_tokens: int = 8192,
                kmax: tuple[int, ...] = (), samples: int = 10, seed: int = 0, bf16: bool = True,
                progress: bool = False) -> dict:
    """Scores of ``model`` on a :class:`ParallelSplit`; see the module docstring for the keys."""
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    batcher = TokenBatcher(split.src_lengths, split.tgt_lengths, max_tokens, shuffle=False)
    totals: dict[str, float] = defaultdict(float)
    tokens = 0
    batches = batcher.batches(0)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="scoring", unit="batch", leave=False)
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                              enabled=device.type == "cuda" and bf16)
    for indices in batches:
        batch = collate(split, indices).to(device)
        with autocast:
            fwd = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
            sums = _token_sums(model, fwd, kmax, generator, samples)
        for name, value in sums.items():
            totals[name] += float(value)
        tokens += int(fwd.tgt_mask.sum())
    model.train(was_training)
    result = {"ppl": math.exp(totals["nll"] / tokens), "entropy": totals["entropy"] / tokens,
              "tokens": tokens, "sentences": len(split)}
    if kmax and model.config.mode not in ("soft", "vae-dirichlet"):
        result["kmax_ppl"] = {str(k): math.exp(totals[f"kmax{k}"] / tokens) for k in kmax}
    if "elbo" in totals:
        result["elbo_ppl"] = math.exp(totals["elbo"] / tokens)
        result["kl"] = totals["kl"] / tokens
    if model.config.mode == "vae-dirichlet":
        result["mc_samples"] = samples
    return result

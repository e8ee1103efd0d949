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

from varattn import stopping
from varattn.device import autocast as device_autocast

from varattn.latent import evaluation_sums, get_mode
from varattn.data.text.batching import TokenBatcher, collate


def perplexity(mean_nll: float) -> float:
    """``exp(mean_nll)``; ``inf`` where that overflows (a diverged model), ``nan`` stays ``nan``."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def validation_metric(mode: str) -> str:
    """The metric that picks the best checkpoint and drives learning-rate decay (docs/design.md §3)."""
    return {"nll": "ppl", "elbo": "elbo_ppl"}[get_mode(mode).validation]


@torch.no_grad()
def score_split(model: torch.nn.Module, split, device: torch.device, *, max_tokens: int = 8192,
                kmax: tuple[int, ...] = (), samples: int = 10, seed: int = 0, bf16: bool = True,
                progress: bool = False) -> dict:
    """Scores of a translation ``model`` (any architecture returning a :class:`varattn.latent.LatentOutput`)
    on a :class:`ParallelSplit`; see the module docstring for the keys. When SIGINT or SIGTERM asks to
    stop (:mod:`varattn.stopping`), the scores cover the batches done, and ``sentences`` says how many."""
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
    autocast = device_autocast(device, bf16)
    mode = get_mode(model.config.mode)
    scored = 0
    for indices in batches:
        batch = collate(split, indices).to(device)
        with autocast:
            out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
            sums = evaluation_sums(mode, out, kmax=kmax if mode.enumerable else (), samples=samples,
                                   generator=generator)
        for name, value in sums.items():
            totals[name] += float(value)
        tokens += int(out.query_weights.sum())
        scored += len(indices)
        if stopping.requested():  # SIGINT/SIGTERM: the scores of the batches done so far
            break
    if hasattr(batches, "close"):  # a progress bar left early: clear it from the terminal
        batches.close()
    model.train(was_training)
    result = {"ppl": perplexity(totals["nll"] / tokens), "entropy": totals["entropy"] / tokens,
              "tokens": tokens, "sentences": scored}
    if kmax and mode.enumerable:
        result["kmax_ppl"] = {str(k): perplexity(totals[f"kmax{k}"] / tokens) for k in kmax}
    if "elbo" in totals:
        result["elbo_ppl"] = perplexity(totals["elbo"] / tokens)
        result["kl"] = totals["kl"] / tokens
    if mode.latent and not mode.enumerable:
        result["mc_samples"] = samples
    return result

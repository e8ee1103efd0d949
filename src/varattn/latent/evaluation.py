r"""Every reported quantity of a mode, per query, from one function (the analogue of torch-struct's one
algorithm under several semirings), so evaluation never switches on a mode's name:

- ``nll``: -log p(y) under the prior: the exact marginal ``-log Σ_s p(s) p(y|s)`` for enumerable
  modes; for ``soft`` the NLL at the expected context; for ``vae-dirichlet`` the Monte-Carlo estimate
  ``-log 1/K Σ_k p(y | z_k)``, z_k ~ Dir(α_p).
- ``kmax{K}`` (enumerable modes): the same with the prior truncated to its K most probable positions.
- ``elbo`` and ``kl`` (modes with a posterior): ``E_q[-log p(y|z)] + KL(q‖p)`` and its KL (by
  enumeration for categorical q; the objective's own estimate for the Dirichlet).
- ``entropy``: the prior's entropy in nats.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from varattn.latent.modes import Mode
from varattn.latent.objectives import (Likelihood, categorical_kl, dirichlet_rsample, entropy, kmax_log_probs,
                                       log_marginal, masked_log_softmax, objective)

__all__ = ["evaluation_terms"]


def evaluation_terms(mode: Mode, likelihood: Likelihood, prior: Tensor, posterior: Optional[Tensor],
                     mask: Optional[Tensor], *, kmax: tuple[int, ...] = (), samples: int = 10,
                     generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """Every reported quantity of ``mode`` per query (see the module docstring), detached.

    prior, posterior: scores ``[..., S]``; mask ``[..., S]`` (broadcastable); ``samples``: Monte-Carlo
    samples where the mode has no exact marginal (``vae-dirichlet``). Returns tensors ``[...]`` keyed
    ``entropy``, ``nll``, and where they apply ``kmax{K}``, ``elbo``, ``kl``.
    """
    with torch.no_grad():
        terms = {"entropy": entropy(prior, mask)}
        if mode.soft_context:
            terms["nll"] = objective("soft", likelihood, prior, mask=mask).nll
            return terms
        if not mode.enumerable:
            weights = dirichlet_rsample(prior, mask, samples=samples, generator=generator)
            terms["nll"] = math.log(samples) - torch.logsumexp(likelihood(weights), dim=-1)
            bound = objective(mode.name, likelihood, prior, posterior, mask, samples=samples, generator=generator)
            terms["elbo"], terms["kl"] = bound.nll + bound.kl, bound.kl
            return terms
        enumerated = likelihood.enumerate()
        terms["nll"] = -log_marginal(enumerated, prior, mask)
        for k in kmax:
            terms[f"kmax{k}"] = -torch.logsumexp(enumerated + kmax_log_probs(prior, mask, k), -1)
        if mode.posterior and posterior is not None:
            log_q = masked_log_softmax(posterior, mask)
            kept = enumerated if mask is None else enumerated.masked_fill(~mask, 0.0)
            reconstruction = -(log_q.exp() * kept).sum(-1)
            kl = categorical_kl(posterior, prior, mask)
            terms["elbo"], terms["kl"] = reconstruction + kl, kl
        return terms

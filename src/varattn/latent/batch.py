"""One path from a model's output to the loss, for every task: the record every model returns and the
masked mean of the mode's surrogate over its real queries.

A model (translation, VQA, any other) returns a :class:`LatentOutput` for a batch: prior and posterior
scores over the positions, the mask of real positions, the :class:`~varattn.latent.Likelihood`, and
which queries are real (target tokens that are not padding, questions that have an answer).
:func:`batch_objective` turns it into the loss the trainer minimises and the sums it reports;
:func:`evaluation_sums` into the sums that validation and ``varattn evaluate`` divide by the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from varattn.latent.chain import chain_forward
from varattn.latent.evaluation import evaluation_terms
from varattn.latent.modes import Mode
from varattn.latent.objectives import Likelihood, entropy, objective

__all__ = ["LatentOutput", "batch_objective", "evaluation_sums", "posterior_scores", "token_terms"]


def posterior_scores(mode: Mode, form: str, prior: Tensor, network: Tensor) -> Tensor:
    """q's scores ``[..., S]`` from the prior's scores and the inference network's output ``[..., S]``.

    ``form`` is ``"independent"`` (the network's output alone, as in the paper), ``"residual"`` (the
    prior's scores plus the network's output: for ``vae-dirichlet`` log α_q = log α_p + δ) or ``"auto"``
    (the mode's default, :attr:`Mode.residual_posterior`). In the residual form q starts at the prior
    and the reconstruction term's gradient reaches the prior network through q's samples, as with the
    residual normal distributions of NVAE (Vahdat and Kautz, 2020); the ELBO and the family of q are
    unchanged. With the independent form, vae-dirichlet's prior stays at the flat Dirichlet at CPU scale
    (benchmarks/results/vae_dirichlet.md)."""
    if form == "auto":
        form = "residual" if mode.residual_posterior else "independent"
    if form == "residual":
        return prior + network
    if form == "independent":
        return network
    raise ValueError(f"unknown posterior form {form!r}; use auto, independent or residual")


@dataclass
class LatentOutput:
    """What a model gives the latent core for one batch.

    prior ``[..., S]`` scores (log-concentrations for ``vae-dirichlet``); posterior ``[..., S]`` scores
    or None; mask ``[..., S]`` bool (broadcastable, True = real position); likelihood for the queries
    ``[...]``; query_weights ``[...]``: bool, True on the queries that count (e.g. real target tokens), or
    float weights (e.g. the share of annotators who gave each scored answer).

    For a chain mode (:attr:`Mode.chain`) the queries ``[B, T]`` are the steps of a sequence, ``prior``
    holds the transitions' content scores and ``jumps`` ``[B or 1, S + 1, S]`` the jump scores of
    :mod:`varattn.latent.chain`; None otherwise.

    topk: 0, or K for truncated enumeration in :func:`batch_objective` (the K positions of highest
    prior score per query, see :func:`varattn.latent.objective`); set by whoever trains (the trainer's
    ``train.enumerate_topk``), read by :func:`batch_objective` only: evaluation stays exact.
    """

    prior: Tensor
    posterior: Optional[Tensor]
    mask: Tensor
    likelihood: Likelihood
    query_weights: Tensor
    jumps: Optional[Tensor] = None
    topk: int = 0


def _weights(query_weights: Tensor) -> Tensor:
    return query_weights if query_weights.is_floating_point() else query_weights.to(torch.float32)


def batch_objective(mode: Mode, out: LatentOutput, *, samples: int = 1, temperature: float = 0.1,
                    generator: Optional[torch.Generator] = None, warmup: bool = False
                    ) -> tuple[Tensor, dict]:
    """The mean surrogate loss over the real queries of a batch, and reportable sums.

    Returns ``(loss, stats)``: ``loss`` a scalar; ``stats`` holds ``tokens`` (how many queries the loss
    is normalised by, an int), and the sums ``nll`` and ``kl`` over those queries (floats). With
    ``out.topk`` > 0 the enumeration is truncated (modes whose record is ``truncatable`` only).
    """
    if out.topk and not mode.truncatable:
        raise ValueError(f"truncated enumeration (topk={out.topk}) is not defined for mode {mode.name!r}")
    if mode.chain:
        nll = -_chain(out).increments
        terms = _ChainTerms(nll, nll.detach(), torch.zeros_like(nll))
    else:
        terms = objective(mode.name, out.likelihood, out.prior, out.posterior, out.mask, samples=samples,
                          temperature=temperature, generator=generator, topk=out.topk,
                          **({"warmup": True} if warmup else {}))
    keep = out.query_weights.bool()
    count = int(keep.sum())
    loss = terms.loss.masked_fill(~keep, 0.0).sum() / max(count, 1)
    stats = {"tokens": count, "nll": float(terms.nll.masked_fill(~keep, 0.0).sum()),
             "kl": float(terms.kl.masked_fill(~keep, 0.0).sum())}
    return loss, stats


@dataclass
class _ChainTerms:
    loss: Tensor
    nll: Tensor
    kl: Tensor


def _chain(out: LatentOutput, kmax: int = 0, emissions: Optional[Tensor] = None):
    if out.jumps is None:
        raise ValueError("a chain mode needs the model's jump scores (LatentOutput.jumps)")
    emissions = out.likelihood.enumerate() if emissions is None else emissions
    return chain_forward(emissions, out.prior, out.jumps, out.mask, out.query_weights.bool(), kmax=kmax)


def token_terms(mode: Mode, out: LatentOutput, *, kmax: tuple[int, ...] = (), samples: int = 10,
                generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """Every reported quantity per query ``[...]`` (see :func:`varattn.latent.evaluation_terms`), detached.

    For a chain mode: ``nll`` is -log p(y_t | y_<t) by the forward algorithm (its sum over a sequence is
    -log p(y)), ``kmax{K}`` the same with each step's predictive truncated to K positions, and
    ``entropy`` that of the predictive p(z_t | y_<t), the chain's prior for the step."""
    if not mode.chain:
        return evaluation_terms(mode, out.likelihood, out.prior, out.posterior, out.mask, kmax=kmax,
                                samples=samples, generator=generator)
    with torch.no_grad():
        emissions = out.likelihood.enumerate()
        forward = _chain(out, emissions=emissions)
        terms = {"nll": -forward.increments, "entropy": entropy(forward.predictive, out.mask)}
        for k in kmax:
            terms[f"kmax{k}"] = -_chain(out, kmax=k, emissions=emissions).increments
        return terms


def evaluation_sums(mode: Mode, out: LatentOutput, *, kmax: tuple[int, ...] = (), samples: int = 10,
                    generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
    """Sums over the weighted queries of every term of :func:`token_terms`, as float64 scalars (divide
    by the number of queries to report a mean)."""
    terms = token_terms(mode, out, kmax=kmax, samples=samples, generator=generator)
    weights = _weights(out.query_weights).double()
    return {name: (value.double() * weights).masked_fill(weights == 0, 0.0).sum() for name, value in terms.items()}

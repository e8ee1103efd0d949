r"""Latent alignment: attention as a latent variable, every training objective of Deng et al. (2018).

The model. For one query (e.g. one target token) with S candidate positions (e.g. source words),
the alignment z is a one-hot vector over the S valid positions, and

.. math::
    p(y, z) = p(z) \, p(y \mid z), \qquad
    p(z = s) = \mathrm{softmax}(\text{prior})_s, \qquad
    \ell(w) = \log p(y \mid \text{context} = \textstyle\sum_s w_s x_s),

with :math:`\ell(s)` short for :math:`\ell` at the one-hot vector on s. An inference network gives
:math:`q(z = s) = \mathrm{softmax}(\text{posterior})_s`. This module knows nothing about words or
images: the model supplies the scores and a :class:`Likelihood`; everything here is a batched
computation over the query dimensions ``[...]`` and the position dimension ``S``.

Objectives (:func:`objective` returns the loss to minimise, i.e. the negative of these):

============= ========================================================= =========================================
mode          objective (maximised)                                     gradient estimator
============= ========================================================= =========================================
soft          :math:`\ell(E_p[z])`                                      exact
marginal      :math:`\log \sum_s p(s) e^{\ell(s)}`                      exact, by enumeration
hard-enum     :math:`\sum_s p(s) \ell(s)`                               exact, by enumeration
hard-sample   same, :math:`z_k \sim p`                                  REINFORCE on p with baseline
                                                                        :math:`b = \ell(E_p[z])`, plus the
                                                                        baseline's own NLL :math:`-b`
vae-enum      :math:`\sum_s q(s) \ell(s) - KL(q \| p)`                  exact, by enumeration
vae-sample    same, :math:`z_k \sim q`                                  REINFORCE on q with reward
                                                                        :math:`\ell(z) - \ell(E_p[z])`
                                                                        (baseline detached); KL closed form
vae-gumbel    :math:`\ell(\hat z) - KL(q \| p)`,                        reparameterised; categorical KL
              :math:`\hat z = \mathrm{softmax}((\log q + g)/\tau)`
vae-rws       :math:`\log \frac1K \sum_k p(z_k) e^{\ell(z_k)} / q(z_k)`  reweighted wake-sleep, weights
                                                                        self-normalised in log space
vae-dirichlet :math:`E_{Dir(\alpha_q)}[\ell(z)] - KL(Dir(\alpha_q) \|`  reparameterised (implicit Gamma
              :math:`Dir(\alpha_p))`, :math:`\alpha = e^{\text{score}}`  gradients); KL closed form
hmm           :math:`\log \sum_{z_{1:T}} \prod_t p(z_t|z_{t-1}) e^{\ell_t(z_t)}`  exact, by the forward algorithm
                                                                        (:mod:`varattn.latent.chain`)
============= ========================================================= =========================================

Surrogate losses per query, with K samples (``samples=K``; always averaged, never an extra output
dimension), :math:`\bar{\cdot}` the mean over k and :math:`\mathrm{sg}` stop-gradient:

- hard-sample: :math:`\overline{-\ell(z_k) - \mathrm{sg}(\ell(z_k) - b) \log p(z_k)} - b`;
  its expected gradient is that of :math:`-\sum_s p(s)\ell(s) - \ell(E_p[z])`.
- vae-sample: :math:`\overline{-\ell(z_k) - \mathrm{sg}(\ell(z_k) - b) \log q(z_k)} + KL(q\|p)`,
  b computed without gradient; its expected gradient is that of vae-enum's loss.
- vae-rws: with :math:`\log w_k = \log p(z_k) + \ell(z_k) - \log q(z_k)` and
  :math:`\tilde w = \mathrm{sg}(\mathrm{softmax}_k \log w)`, the loss is
  :math:`-\sum_k \tilde w_k [\ell(z_k) + \log p(z_k)] - \sum_k \tilde w_k \log q(z_k)`
  (wake updates of the likelihood, the prior and q). ``Terms.kl`` reports the closed-form KL(q‖p)
  for monitoring; it is not part of this loss.
- vae-enum with ``warmup=True`` (the exact start): the bound evaluated at the exact posterior
  :math:`q^*(s) \propto p(s) e^{\ell(s)}`, where it equals the marginal likelihood, trains the prior and
  the likelihood, and q learns to match :math:`q^*`: the loss is
  :math:`-\log \sum_s p(s) e^{\ell(s)} + KL(\mathrm{sg}(q^*) \| q)`. The KL(q‖p) term keeps its full
  weight throughout: this is not annealing but the same bound at a better q, which enumeration can afford.
  It sharpens the prior while it lasts; what it does after the switch to the network's q depends on q's
  form (docs/transformer.md).
- vae-dirichlet with ``warmup=True``: the paper's warm-up objective
  :math:`E_{z \sim Dir(\alpha_p)}[\ell(z)]`, sampled from the *prior* Dirichlet, no KL, no posterior.
  The objective takes q's scores as given; models form them with
  :func:`varattn.latent.posterior_scores` (for vae-dirichlet by default log α_q = log α_p + the inference
  network's output, so that q starts at the prior).

Truncated enumeration (``topk=K``, training only; modes whose record is ``truncatable``). The likelihood
is enumerated only at the K valid positions :math:`\mathcal K` of highest score under the distribution
that weights the sum — the prior for ``marginal`` and ``hard-enum``, q for ``vae-enum`` — through the
likelihood's optional ``enumerate_at(index)`` (else ``enumerate()`` gathered: correct, nothing saved):

- marginal: :math:`-\log \sum_{s \in \mathcal K} p(s) e^{\ell(s)}`, the prior **not** renormalised. It
  drops non-negative terms, so it is an upper bound on the exact loss, tight as the posterior's mass
  leaves the other positions; its gradient is the exact one with the posterior truncated to
  :math:`\mathcal K` and renormalised there (the prior is still pushed down outside :math:`\mathcal K`).
  Renormalising would make the mass outside :math:`\mathcal K` invisible to the gradient.
- hard-enum, vae-enum: :math:`-\sum_{s \in \mathcal K} \tilde p(s) \ell(s)` with the weighting
  distribution **renormalised** over :math:`\mathcal K` (vae-enum adds the exact KL(q‖p)). Without
  renormalisation the dropped terms :math:`p(s)\ell(s) \le 0` would reward moving mass off
  :math:`\mathcal K`; with it the loss is the expected NLL under the top-K truncation, biased low
  (optimistic) by the share of the best positions, and positions outside :math:`\mathcal K` get no
  gradient from the reconstruction term.

With K ≥ the number of valid positions every truncated loss is the exact one.

Conventions: scores ``[..., S]`` and ``mask`` ``[..., S]`` (bool, True = real position, broadcastable).
Masked positions get no probability, no samples and exactly zero gradient; their score values are
never read (padding may hold anything). A query whose every position is masked gets loss, nll and kl
equal to 0. Arithmetic is in float32 at least (bf16/fp16 inputs are promoted; float64 stays float64).
Randomness comes only from the ``generator`` argument (a ``torch.Generator`` on the scores' device;
None = PyTorch's global generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor

from varattn.latent.modes import Mode

__all__ = [
    "MODES", "MODE_RECORDS", "get_mode", "LOG_ALPHA_MIN", "LOG_ALPHA_MAX", "Likelihood", "Terms", "objective",
    "masked_log_softmax", "categorical_kl", "entropy", "kmax_log_probs", "log_marginal",
    "sample_categorical", "dirichlet_kl", "dirichlet_rsample", "enumerate_positions",
]


#: Dirichlet concentrations are α = exp(clamp(score, LOG_ALPHA_MIN, LOG_ALPHA_MAX)), i.e. α ∈ [1e-4, 1e4].
LOG_ALPHA_MIN = math.log(1e-4)
LOG_ALPHA_MAX = math.log(1e4)

_NEG_INF = float("-inf")


@runtime_checkable
class Likelihood(Protocol):
    """log p(y | context) for one observation per query, as a function of the alignment weights.

    ``enumerate()`` returns ``[..., S]``: ℓ(s) = log p(y | z = s) for every one-hot alignment. A
    likelihood may also offer ``enumerate_at(index)``: ``index`` ``[..., K]`` int64 positions (valid or
    not) -> ``[..., K]`` ℓ at those positions only, for truncated enumeration (:func:`enumerate_positions`
    falls back on ``enumerate()`` gathered).
    ``likelihood(weights)`` takes ``[..., K, S]`` points on the simplex (rows sum to 1, zero on masked
    positions) and returns ``[..., K]``: ℓ(w) with context ``Σ_s w_s x_s``. Weights arrive in the
    working dtype (float32 or float64); a half-precision likelihood casts them itself (autocast does).
    Values at masked positions may be anything finite; they are ignored.
    """

    def enumerate(self) -> Tensor: ...

    def __call__(self, weights: Tensor) -> Tensor: ...


@dataclass
class Terms:
    """Per-query results of :func:`objective`, each of shape ``[...]``.

    loss: the surrogate; ``loss.sum().backward()`` gives the estimator's gradient.
    nll:  detached reconstruction term (E[-ℓ] or its sample estimate); -log marginal for ``marginal``;
          for ``vae-rws`` the importance-sampled -log (1/K) Σ_k p(z_k) p(y|z_k) / q(z_k).
    kl:   detached KL(q ‖ p) (categorical, or Dirichlet for ``vae-dirichlet``); zeros without a posterior.
    """

    loss: Tensor
    nll: Tensor
    kl: Tensor


# ----------------------------------------------------------------------------- masks and dtypes


@dataclass
class _Rows:
    """Validity of positions. ``valid`` [..., S] is the user's mask; ``nonempty`` [...] marks queries
    with a valid position; ``eff`` [..., S] is ``valid`` with all-masked rows treated as all-valid, so
    intermediate computations never see an empty row (their results are zeroed at the end)."""

    valid: Tensor
    nonempty: Tensor
    eff: Tensor
    dtype: torch.dtype

    def scores(self, x: Tensor) -> Tensor:
        """Promote and replace masked scores by 0: their values never matter (nor their NaNs)."""
        return torch.where(self.valid, x.to(self.dtype), 0.0)

    def finish(self, x: Tensor, fill: float = 0.0) -> Tensor:
        return torch.where(self.nonempty, x, fill)


def _rows(mask: Optional[Tensor], *scores: Optional[Tensor]) -> _Rows:
    present = [s for s in scores if s is not None]
    dtype = torch.float32
    for s in present:
        dtype = torch.promote_types(dtype, s.dtype) if s.is_floating_point() else dtype
    shapes = [s.shape for s in present] + ([mask.shape] if mask is not None else [])
    shape = torch.broadcast_shapes(*shapes)
    device = present[0].device
    if mask is None:
        valid = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        valid = torch.broadcast_to(mask.to(device=device, dtype=torch.bool), shape)
    nonempty = valid.any(-1)
    return _Rows(valid, nonempty, valid | ~nonempty[..., None], dtype)


def _log_softmax(scores: Tensor, eff: Tensor) -> Tensor:
    """Log-softmax over ``eff`` positions (never an empty row); -inf elsewhere."""
    return scores.masked_fill(~eff, _NEG_INF).log_softmax(-1)


def _cat_kl(log_q: Tensor, log_p: Tensor, eff: Tensor) -> Tensor:
    """Σ_s q(s) (log q(s) - log p(s)) over ``eff``; written so that no 0·∞ reaches autograd."""
    diff = (log_q - log_p).masked_fill(~eff, 0.0)
    return (log_q.exp() * diff).sum(-1)


def _log_alpha(scores: Tensor) -> Tensor:
    return scores.clamp(LOG_ALPHA_MIN, LOG_ALPHA_MAX)


def _dir_kl(log_alpha_q: Tensor, log_alpha_p: Tensor, eff: Tensor) -> Tensor:
    """KL(Dir(α_q) ‖ Dir(α_p)) over ``eff`` positions; log-alphas already clamped. In float64: with
    concentrations in the thousands its log-gamma terms cancel to a small difference that float32 loses."""
    dtype = log_alpha_q.dtype
    a, b = log_alpha_q.double().exp(), log_alpha_p.double().exp()
    a0, b0 = a.masked_fill(~eff, 0.0).sum(-1), b.masked_fill(~eff, 0.0).sum(-1)
    per_s = torch.lgamma(b) - torch.lgamma(a) + (a - b) * (torch.digamma(a) - torch.digamma(a0)[..., None])
    return (torch.lgamma(a0) - torch.lgamma(b0) + per_s.masked_fill(~eff, 0.0).sum(-1)).to(dtype)


def _gumbel(shape: torch.Size, like: Tensor, generator: Optional[torch.Generator]) -> Tensor:
    u = torch.rand(shape, generator=generator, dtype=like.dtype, device=like.device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(like.dtype).tiny)))


# ----------------------------------------------------------------------------- public helpers


def masked_log_softmax(scores: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """log softmax of ``scores`` [..., S] over the True positions of ``mask``; -inf on masked ones
    (an all-masked row is all -inf). Gradients never reach masked scores and are never NaN."""
    r = _rows(mask, scores)
    return _log_softmax(r.scores(scores), r.eff).masked_fill(~r.valid, _NEG_INF)


def categorical_kl(q_logits: Tensor, p_logits: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """KL(q ‖ p) [...] in nats between the categoricals softmax(q_logits), softmax(p_logits) [..., S]
    over valid positions; 0 for all-masked rows."""
    r = _rows(mask, q_logits, p_logits)
    kl = _cat_kl(_log_softmax(r.scores(q_logits), r.eff), _log_softmax(r.scores(p_logits), r.eff), r.eff)
    return r.finish(kl)


def entropy(logits: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Entropy [...] in nats of softmax(logits) [..., S] over valid positions; 0 for all-masked rows."""
    r = _rows(mask, logits)
    log_p = _log_softmax(r.scores(logits), r.eff)
    return r.finish(-(log_p.exp() * log_p.masked_fill(~r.eff, 0.0)).sum(-1))


def kmax_log_probs(scores: Tensor, mask: Optional[Tensor], k: int) -> Tensor:
    """K-max truncation: log-probabilities [..., S] that keep the ``k`` largest valid scores (ties
    broken by ``torch.topk``), renormalised over them; -inf elsewhere."""
    r = _rows(mask, scores)
    s = r.scores(scores)
    k = max(1, min(int(k), s.shape[-1]))
    top = s.masked_fill(~r.valid, _NEG_INF).topk(k, dim=-1).indices
    keep = torch.zeros_like(r.valid).scatter(-1, top, True) & r.valid
    return masked_log_softmax(s, keep)


def enumerate_positions(likelihood: Likelihood, index: Tensor) -> Tensor:
    """ℓ at the positions ``index`` ``[..., K]`` of each query -> ``[..., K]``: the likelihood's own
    ``enumerate_at`` when it has one (computing only those), else ``enumerate()`` gathered."""
    at = getattr(likelihood, "enumerate_at", None)
    if at is not None:
        return at(index)
    values = likelihood.enumerate()
    return values.expand(*index.shape[:-1], values.shape[-1]).gather(-1, index)


def log_marginal(log_lik_enum: Tensor, prior_scores: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """log Σ_s p(s) exp(ℓ(s)) [...] from ``log_lik_enum`` = ℓ(s) [..., S] and prior scores [..., S];
    0 for all-masked rows (an empty sum, reported as no term)."""
    r = _rows(mask, prior_scores, log_lik_enum)
    ll = r.scores(log_lik_enum)
    return r.finish(torch.logsumexp(_log_softmax(r.scores(prior_scores), r.eff) + ll, -1))


def sample_categorical(log_probs: Tensor, samples: int = 1,
                       generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw ``samples`` = K indices per row from softmax(log_probs) [..., S] by Gumbel-max.

    Returns **indices** ``[..., K]`` (int64); ``F.one_hot(idx, S)`` gives ``[..., K, S]``. Positions
    with -inf log-probability are never drawn; a row that is -inf everywhere returns index 0.
    """
    lp = log_probs.to(torch.promote_types(log_probs.dtype, torch.float32)).detach()
    g = _gumbel(lp.shape[:-1] + (samples, lp.shape[-1]), lp, generator)
    return (lp[..., None, :] + g).argmax(-1)


def dirichlet_rsample(log_alpha: Tensor, mask: Optional[Tensor] = None, samples: int = 1,
                      generator: Optional[torch.Generator] = None) -> Tensor:
    """Reparameterised samples z ~ Dir(α) over valid positions, ``[..., K, S]`` (0 on masked ones).

    α = exp(clamp(log_alpha, LOG_ALPHA_MIN, LOG_ALPHA_MAX)). Each Gamma(α) draw is taken in log space
    as log G = log G' + (log U)/α with G' ~ Gamma(α + 1) (implicit reparameterisation gradient) and
    U ~ Uniform(0, 1) (Marsaglia–Tsang boosting), and z = softmax(log G) over valid positions, so that
    tiny concentrations neither underflow nor divide 0 by 0.
    """
    r = _rows(mask, log_alpha)
    z = _dirichlet_rsample(_log_alpha(r.scores(log_alpha)), r.eff, samples, generator)
    return z * r.nonempty[..., None, None]


def _dirichlet_rsample(log_alpha: Tensor, eff: Tensor, samples: int,
                       generator: Optional[torch.Generator]) -> Tensor:
    shape = log_alpha.shape[:-1] + (samples, log_alpha.shape[-1])
    alpha = log_alpha.exp()[..., None, :].expand(shape)
    g = torch._standard_gamma(alpha + 1.0, generator=generator)
    tiny = torch.finfo(alpha.dtype).tiny
    u = torch.rand(shape, generator=generator, dtype=alpha.dtype, device=alpha.device).clamp_min(tiny)
    log_g = g.clamp_min(tiny).log() + u.log() / alpha
    return log_g.masked_fill(~eff[..., None, :], _NEG_INF).softmax(-1)


def dirichlet_kl(log_alpha_q: Tensor, log_alpha_p: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """KL(Dir(α_q) ‖ Dir(α_p)) [...] over the valid positions only (the Dirichlets on the sub-simplex
    of valid positions); α = exp of the clamped log-concentrations; 0 for all-masked rows."""
    r = _rows(mask, log_alpha_q, log_alpha_p)
    kl = _dir_kl(_log_alpha(r.scores(log_alpha_q)), _log_alpha(r.scores(log_alpha_p)), r.eff)
    return r.finish(kl)


# ----------------------------------------------------------------------------- the objectives


@dataclass
class _Problem:
    likelihood: Likelihood
    prior: Tensor                 # [..., S] promoted, masked scores set to 0
    posterior: Optional[Tensor]   # [..., S] or None
    rows: _Rows
    samples: int
    temperature: float
    generator: Optional[torch.Generator]
    warmup: bool
    topk: int = 0

    def log_prior(self) -> Tensor:
        return _log_softmax(self.prior, self.rows.eff)

    def log_posterior(self) -> Tensor:
        return _log_softmax(self.posterior, self.rows.eff)

    def call(self, weights: Tensor) -> Tensor:
        """ℓ at weights [..., K, S] -> [..., K], in the working dtype."""
        return self.likelihood(weights).to(self.rows.dtype)

    def enum(self) -> Tensor:
        """ℓ(s) [..., S], 0 on masked positions."""
        return torch.where(self.rows.valid, self.likelihood.enumerate().to(self.rows.dtype), 0.0)

    def enum_top(self, log_weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Truncated enumeration at the ``topk`` positions of highest ``log_weights`` [..., S]:
        ``(index [..., K], keep [..., K] bool, ℓ [..., K])``, ℓ 0 where not ``keep``."""
        k = min(self.topk, log_weights.shape[-1])
        index = log_weights.detach().masked_fill(~self.rows.eff, _NEG_INF).topk(k, dim=-1).indices
        keep = self.rows.eff.gather(-1, index)
        ell = enumerate_positions(self.likelihood, index).to(self.rows.dtype)
        return index, keep, torch.where(keep, ell, 0.0)

    def sample(self, log_probs: Tensor) -> tuple[Tensor, Tensor]:
        """K indices [..., K] from log_probs, and their one-hot weights [..., K, S]."""
        idx = sample_categorical(log_probs, self.samples, self.generator)
        return idx, F.one_hot(idx, log_probs.shape[-1]).to(self.rows.dtype)


_Out = tuple[Tensor, Tensor, Optional[Tensor]]   # loss, nll, kl


def _soft(pb: _Problem) -> _Out:
    ell = pb.call(pb.log_prior().exp()[..., None, :])[..., 0]
    return -ell, -ell, None


def _marginal(pb: _Problem) -> _Out:
    log_p = pb.log_prior()
    if pb.topk:  # not renormalised: an upper bound on the exact loss (module docstring)
        index, keep, ell = pb.enum_top(log_p)
        nll = -torch.logsumexp((log_p.gather(-1, index) + ell).masked_fill(~keep, _NEG_INF), -1)
        return nll, nll, None
    nll = -torch.logsumexp(log_p + pb.enum(), -1)
    return nll, nll, None


def _expected_nll(pb: _Problem, log_w: Tensor) -> Tensor:
    """-Σ_s w(s) ℓ(s) [...] for log-weights [..., S]; with ``topk``, over the top K positions of w with w
    renormalised there (module docstring)."""
    if not pb.topk:
        return -(log_w.exp() * pb.enum()).sum(-1)
    index, keep, ell = pb.enum_top(log_w)
    weights = log_w.gather(-1, index).masked_fill(~keep, _NEG_INF).softmax(-1)
    return -(weights * ell).sum(-1)


def _hard_enum(pb: _Problem) -> _Out:
    nll = _expected_nll(pb, pb.log_prior())
    return nll, nll, None


def _hard_sample(pb: _Problem) -> _Out:
    log_p = pb.log_prior()
    idx, one_hot = pb.sample(log_p)
    ell = pb.call(torch.cat([one_hot, log_p.exp()[..., None, :]], -2))   # K samples, then E_p[z]
    ell_z, base = ell[..., :-1], ell[..., -1]
    reward = (ell_z - base[..., None]).detach()
    loss = (-ell_z - reward * log_p.gather(-1, idx)).mean(-1) - base
    return loss, -ell_z.mean(-1), None


def _vae_enum(pb: _Problem) -> _Out:
    log_q, log_p = pb.log_posterior(), pb.log_prior()
    if pb.warmup:
        return _vae_enum_exact_start(pb, log_q, log_p)
    nll = _expected_nll(pb, log_q)
    kl = _cat_kl(log_q, log_p, pb.rows.eff)
    return nll + kl, nll, kl


def _vae_enum_exact_start(pb: _Problem, log_q: Tensor, log_p: Tensor) -> _Out:
    """vae-enum's warm-up: the bound at the exact posterior q* ∝ p(s) e^{ℓ(s)}, where it equals the
    marginal likelihood, trains the prior and the likelihood; q learns to match q* (KL(sg(q*) ‖ q))."""
    joint = log_p + pb.enum()
    log_marginal = torch.logsumexp(joint.masked_fill(~pb.rows.eff, _NEG_INF), -1)
    nll = -log_marginal
    log_exact = (joint - log_marginal[..., None]).detach()
    match = _cat_kl(log_exact, log_q, pb.rows.eff)
    return nll + match, nll, _cat_kl(log_q, log_p, pb.rows.eff)


def _vae_sample(pb: _Problem) -> _Out:
    log_q, log_p = pb.log_posterior(), pb.log_prior()
    idx, one_hot = pb.sample(log_q)
    ell = pb.call(torch.cat([one_hot, log_p.exp().detach()[..., None, :]], -2))
    ell_z, base = ell[..., :-1], ell[..., -1].detach()
    reward = ell_z.detach() - base[..., None]
    kl = _cat_kl(log_q, log_p, pb.rows.eff)
    loss = (-ell_z - reward * log_q.gather(-1, idx)).mean(-1) + kl
    return loss, -ell_z.mean(-1), kl


def _vae_gumbel(pb: _Problem) -> _Out:
    log_q, log_p = pb.log_posterior(), pb.log_prior()
    eff = pb.rows.eff[..., None, :]
    g = _gumbel(log_q.shape[:-1] + (pb.samples, log_q.shape[-1]), log_q, pb.generator)
    logits = (log_q[..., None, :].masked_fill(~eff, 0.0) + g) / pb.temperature
    z = logits.masked_fill(~eff, _NEG_INF).softmax(-1)
    nll = -pb.call(z).mean(-1)
    kl = _cat_kl(log_q, log_p, pb.rows.eff)
    return nll + kl, nll, kl


def _vae_rws(pb: _Problem) -> _Out:
    log_q, log_p = pb.log_posterior(), pb.log_prior()
    idx, one_hot = pb.sample(log_q)
    ell = pb.call(one_hot)
    log_q_z, log_p_z = log_q.gather(-1, idx), log_p.gather(-1, idx)
    log_w = log_p_z + ell - log_q_z
    w = log_w.detach().softmax(-1)                      # self-normalised, in log space
    loss = -(w * (ell + log_p_z)).sum(-1) - (w * log_q_z).sum(-1)
    nll = math.log(pb.samples) - torch.logsumexp(log_w, -1)
    return loss, nll, _cat_kl(log_q, log_p, pb.rows.eff)


def _vae_dirichlet(pb: _Problem) -> _Out:
    eff = pb.rows.eff
    if pb.warmup:
        z = _dirichlet_rsample(_log_alpha(pb.prior), eff, pb.samples, pb.generator)
        nll = -pb.call(z).mean(-1)
        return nll, nll, None
    log_aq, log_ap = _log_alpha(pb.posterior), _log_alpha(pb.prior)
    z = _dirichlet_rsample(log_aq, eff, pb.samples, pb.generator)
    nll = -pb.call(z).mean(-1)
    kl = _dir_kl(log_aq, log_ap, eff)
    return nll + kl, nll, kl


def _sequence_only(pb: _Problem) -> _Out:
    raise ValueError("mode 'hmm' couples the queries of a sequence: its loss comes from "
                     "varattn.latent.batch_objective (or varattn.latent.chain), not query by query")


#: every mode, once: its properties (see :class:`~varattn.latent.modes.Mode`) and its objective
MODE_RECORDS: dict[str, Mode] = {m.name: m for m in (
    Mode("soft", enumerable=False, soft_context=True, loss=_soft),
    Mode("marginal", truncatable=True, loss=_marginal),
    Mode("hard-enum", truncatable=True, loss=_hard_enum),
    Mode("hard-sample", loss=_hard_sample),
    Mode("vae-enum", posterior=True, truncatable=True, warmup=True, warmup_uses_posterior=True, loss=_vae_enum),
    Mode("vae-sample", posterior=True, loss=_vae_sample),
    Mode("vae-gumbel", posterior=True, loss=_vae_gumbel),
    Mode("vae-rws", posterior=True, defaults=(("model.samples", 5),), loss=_vae_rws),
    Mode("vae-dirichlet", posterior=True, enumerable=False, warmup=True, residual_posterior=True,
         defaults=(("train.warmup_steps", 1000),), loss=_vae_dirichlet),
    Mode("hmm", chain=True, loss=_sequence_only),
)}

#: every mode's name, in the paper's order
MODES: tuple[str, ...] = tuple(MODE_RECORDS)


def get_mode(name: str) -> Mode:
    """The record of ``name``; ValueError naming the choices for an unknown name."""
    try:
        return MODE_RECORDS[name]
    except KeyError:
        raise ValueError(f"unknown latent mode {name!r}; choose one of {', '.join(MODES)}") from None



def objective(mode: str, likelihood: Likelihood, prior: Tensor, posterior: Optional[Tensor] = None,
              mask: Optional[Tensor] = None, *, samples: int = 1, temperature: float = 0.1,
              generator: Optional[torch.Generator] = None, warmup: bool = False, topk: int = 0) -> Terms:
    """Loss, NLL and KL per query for one of :data:`MODES` (see the module docstring for the math).

    Args:
        mode: one of :data:`MODES`.
        likelihood: a :class:`Likelihood` for the same queries ``[...]`` and positions ``S``.
        prior: prior scores ``[..., S]`` (log-concentrations for ``vae-dirichlet``).
        posterior: inference-network scores ``[..., S]``; required by ``vae-*`` modes (except
            ``vae-dirichlet`` with ``warmup=True``), ignored otherwise.
        mask: bool ``[..., S]``, True on real positions, broadcastable; None = all real.
        samples: K, the number of samples per query for sampling modes (results are averaged over K;
            for ``vae-rws`` K is the number of importance samples).
        temperature: τ of ``vae-gumbel``.
        generator: ``torch.Generator`` on the scores' device for every random draw.
        warmup: the mode's warm-up objective (modes whose record has ``warmup``): for ``vae-dirichlet``
            E_{z~Dir(α_p)}[ℓ(z)] (no KL, no posterior); for ``vae-enum`` the exact start (module docstring).
        topk: 0 = exact; K > 0 = truncated enumeration over the K positions of highest prior (q for
            ``vae-enum``) score, for modes whose record is ``truncatable`` (module docstring).

    Returns:
        :class:`Terms` of tensors ``[...]`` in the working dtype (float32, or float64 for float64 input).
    """
    record = get_mode(mode)
    if warmup and not record.warmup:
        raise ValueError(f"warmup=True is only defined for modes with a warm-up, not {mode!r}")
    needs_q = record.posterior and (record.warmup_uses_posterior or not warmup)
    if needs_q and posterior is None:
        raise ValueError(f"mode {mode!r} needs posterior scores (an inference network)")
    if int(samples) < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if int(topk) < 0 or (topk and not record.truncatable):
        raise ValueError(f"topk={topk}: truncated enumeration is defined for "
                         f"{', '.join(m.name for m in MODE_RECORDS.values() if m.truncatable)}, not {mode!r}"
                         if topk > 0 else f"topk must be 0 or positive, got {topk}")
    posterior = posterior if needs_q else None
    rows = _rows(mask, prior, posterior)
    pb = _Problem(likelihood, rows.scores(prior), None if posterior is None else rows.scores(posterior),
                  rows, int(samples), float(temperature), generator, warmup, int(topk))
    loss, nll, kl = record.loss(pb)
    kl = torch.zeros_like(nll) if kl is None else kl
    return Terms(rows.finish(loss), rows.finish(nll).detach(), rows.finish(kl).detach())

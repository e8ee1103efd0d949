r"""First-order latent alignment: a hidden Markov chain over positions, with exact inference.

The independent model lets every query t choose its position afresh, p(z_t | h_t). Here the choice
also depends on the previous one,

.. math::
    p(y, z) = \prod_t p(z_t \mid z_{t-1}, h_t)\, p(y_t \mid z_t, h_t), \qquad
    p(z_t = s \mid z_{t-1} = s', h_t) = \mathrm{softmax}_s\big(a_t(s) + J(s - s')\big),

with :math:`a_t(s)` the model's content scores (the prior scores of the independent model) and
:math:`J` a learned score per jump width, read from a ``jumps`` table ``[..., S + 1, S]`` whose row
``r = s' + 1`` scores the move from position s' to every s and whose row 0 scores the first move from a
virtual start before position 0 (so that "begin at the first word" is a jump of +1 like any other).
Because the states h_t never depend on z, the sequence likelihood is one forward pass,
O(T · S²) per sequence:

.. math::
    \psi_t(s) = \ell_t(s) + \log \sum_{s'} \phi_{t-1}(s')\, A_t(s', s), \qquad
    c_t = \log \sum_s e^{\psi_t(s)} = \log p(y_t \mid y_{<t}), \qquad \phi_t = \psi_t - c_t,

where :math:`\ell_t(s) = \log p(y_t \mid z_t = s, h_t)` are the emission scores (a
:class:`~varattn.latent.Likelihood`'s ``enumerate()``), φ_t = log p(z_t | y_≤t) the filtering
distribution and :math:`\log p(y) = \sum_t c_t`. Reporting the increments c_t per query keeps the
per-token accounting of the other modes (a perplexity is their mean). Posterior marginals
p(z_t | y_1..T) — which use the future of the target as well as its past — are the gradient of Σ_t c_t
with respect to the emission scores (forward–backward by autograd); the Viterbi path is the same
recursion in the max-plus semiring.

With a ``jumps`` table that does not depend on s' (e.g. all zeros) the transition is softmax(a_t), and the
forward pass is exactly the independent model's marginal Σ_t log Σ_s p_t(s) e^{ℓ_t(s)}.

Conventions: queries ``[B, T]`` along the chain (T is dimension 1), positions S last; ``mask`` ``[B, S]``
or broadcastable ``[B, 1, S]`` (True = real position); ``steps`` ``[B, T]`` bool, True on real queries,
which must come first in each row (ragged lengths padded at the end). Padded steps carry the filter
unchanged and report 0. Arithmetic is in float32 at least (bf16 inputs are promoted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

__all__ = ["ChainForward", "jump_buckets", "chain_transitions", "chain_forward", "chain_marginals",
           "chain_viterbi", "chain_predict", "chain_update", "chain_step_prior"]

# finite stand-in for log 0: sums of two stay finite in float32, exp() of it is exactly 0, and its
# gradient is exactly 0 (true -inf would give NaN gradients through logsumexp of an empty row)
_LOG_ZERO = -1e30


def jump_buckets(sources: int, width: int, device: torch.device | None = None) -> Tensor:
    """Bucket of every move: ``[S + 1, S]`` int64, row ``s' + 1`` (row 0 = the start, s' = -1) and column
    s hold ``clamp(s - s', -width, width) + width``, i.e. ``2 * width + 1`` buckets."""
    previous = torch.arange(-1, sources, device=device)[:, None]
    return (torch.arange(sources, device=device)[None, :] - previous).clamp(-width, width) + width


def _position_mask(mask: Tensor, batch: int, sources: int) -> Tensor:
    """``[B, S]`` bool from ``[B, S]``, ``[B, 1, S]`` or anything broadcastable to ``[B, S]``."""
    if mask.dim() == 3:
        mask = mask[:, 0, :]
    return torch.broadcast_to(mask.bool(), (batch, sources))


def chain_transitions(scores: Tensor, jumps: Tensor, mask: Tensor) -> Tensor:
    """Log transition probabilities ``[B, T, S + 1, S]`` (float32 at least).

    scores ``[B, T, S]`` content scores a_t(s); jumps ``[B or 1, S + 1, S]`` (or ``[B, T, S + 1, S]``)
    J(s' → s), row 0 the start; mask ``[B, S]`` / ``[B, 1, S]``. Entry ``[b, t, s' + 1, s]`` is
    log p(z_t = s | z_{t-1} = s'), normalised over the real s; masked s get log 0. Rows of masked s'
    are finite and never used.
    """
    batch, _, sources = scores.shape
    dtype = torch.promote_types(scores.dtype, torch.float32)
    valid = _position_mask(mask, batch, sources)
    if jumps.dim() == 3:
        jumps = jumps[:, None]
    logits = scores.to(dtype)[:, :, None, :] + jumps.to(dtype)
    logits = logits.masked_fill(~valid[:, None, None, :], _LOG_ZERO)
    return logits.log_softmax(-1)


@dataclass
class ChainForward:
    """Results of :func:`chain_forward`, per query.

    increments ``[B, T]``: c_t = log p(y_t | y_<t) (0 on padded steps); predictive ``[B, T, S]``:
    log p(z_t | y_<t), the chain's prior for step t (log 0 on masked positions); filtered ``[B, T, S]``:
    log p(z_t | y_≤t).
    """

    increments: Tensor
    predictive: Tensor
    filtered: Tensor


def chain_predict(filtered: Tensor, transitions: Tensor) -> Tensor:
    """One step of prediction: log p(z_t | y_<t) ``[N, S]`` from the previous filter log p(z_{t-1} | y_<t)
    ``[N, S]`` and the step's transitions ``[N, S, S]`` (rows the previous position)."""
    return torch.logsumexp(filtered[:, :, None] + transitions, dim=1)


def chain_update(predictive: Tensor, emissions: Tensor) -> tuple[Tensor, Tensor]:
    """One step of filtering: from log p(z_t | y_<t) ``[N, S]`` and emission scores ℓ_t(s) ``[N, S]`` to
    ``(c_t [N], log p(z_t | y_≤t) [N, S])``."""
    joint = predictive + emissions
    increment = torch.logsumexp(joint, dim=-1)
    return increment, joint - increment[:, None]


def chain_step_prior(scores: Tensor, jumps: Tensor, mask: Tensor, filtered: Optional[Tensor]) -> Tensor:
    """The chain's prior for one step of N rows (decoding): log p(z_t | y_<t) ``[N, S]`` from the step's
    content scores ``[N, S]``, jumps ``[N or 1, S + 1, S]``, mask ``[N, S]`` and the previous filter
    log p(z_{t-1} | y_<t) ``[N, S]`` (None at the first step)."""
    transitions = chain_transitions(scores[:, None, :], jumps, mask)[:, 0]    # [N, S + 1, S]
    if filtered is None:
        prior = transitions[:, 0]
    else:
        prior = chain_predict(filtered.to(transitions.dtype), transitions[:, 1:])
    return prior.masked_fill(~_position_mask(mask, *scores.shape), _LOG_ZERO)


def chain_forward(emissions: Tensor, scores: Tensor, jumps: Tensor, mask: Tensor, steps: Tensor,
                  kmax: int = 0) -> ChainForward:
    """The forward algorithm in log space (see the module docstring).

    emissions ``[B, T, S]`` ℓ_t(s); scores ``[B, T, S]`` content scores; jumps ``[B or 1, S + 1, S]``;
    mask ``[B, S]`` / ``[B, 1, S]``; steps ``[B, T]`` bool. With ``kmax > 0`` each step's predictive is
    truncated to its ``kmax`` most probable positions and renormalised before the emission is applied
    (the K-max approximation of the chain). Differentiable in every input.
    """
    batch, length, sources = emissions.shape
    dtype = torch.promote_types(torch.promote_types(emissions.dtype, scores.dtype), torch.float32)
    valid = _position_mask(mask, batch, sources)
    transitions = chain_transitions(scores, jumps, mask)                      # [B, T, S + 1, S]
    emissions = emissions.to(dtype).masked_fill(~valid[:, None, :], 0.0)
    steps = steps.bool()
    increments, predictive, filtered = [], [], []
    current = None  # log p(z_{t-1} | y_<t) [B, S]
    for t in range(length):
        if current is None:
            prior = transitions[:, t, 0, :]
        else:
            prior = chain_predict(current, transitions[:, t, 1:, :])
        prior = prior.masked_fill(~valid, _LOG_ZERO)
        if 0 < kmax < sources:
            top = prior.topk(kmax, dim=-1).indices
            keep = torch.zeros_like(valid).scatter(-1, top, True) & valid
            prior = prior.masked_fill(~keep, _LOG_ZERO).log_softmax(-1).masked_fill(~keep, _LOG_ZERO)
        increment, update = chain_update(prior, emissions[:, t])
        real = steps[:, t]
        if current is not None:
            update = torch.where(real[:, None], update, current)
        else:
            update = torch.where(real[:, None], update, prior)
        increments.append(torch.where(real, increment, 0.0))
        predictive.append(prior)
        filtered.append(update)
        current = update
    return ChainForward(torch.stack(increments, 1), torch.stack(predictive, 1), torch.stack(filtered, 1))


def chain_marginals(emissions: Tensor, scores: Tensor, jumps: Tensor, mask: Tensor, steps: Tensor) -> Tensor:
    """Posterior marginals p(z_t = s | y_1..T) ``[B, T, S]`` (zero on masked positions and padded steps),
    as the gradient of log p(y) with respect to the emission scores. Detached; works under ``no_grad``."""
    with torch.enable_grad():
        leaf = emissions.detach().to(torch.promote_types(emissions.dtype, torch.float32)).requires_grad_(True)
        total = chain_forward(leaf, scores.detach(), jumps.detach(), mask, steps).increments.sum()
        (grad,) = torch.autograd.grad(total, leaf)
    return grad.masked_fill(~steps.bool()[:, :, None], 0.0)


def chain_viterbi(emissions: Tensor, scores: Tensor, jumps: Tensor, mask: Tensor, steps: Tensor
                  ) -> tuple[Tensor, Tensor]:
    """The most probable alignment path: ``(path [B, T] int64, log p(y, path) [B])``; padded steps hold
    the last real position. Detached."""
    with torch.no_grad():
        batch, length, sources = emissions.shape
        dtype = torch.promote_types(emissions.dtype, torch.float32)
        valid = _position_mask(mask, batch, sources)
        transitions = chain_transitions(scores, jumps, mask)
        emissions = emissions.to(dtype).masked_fill(~valid[:, None, :], 0.0)
        steps = steps.bool()
        keep = torch.arange(sources, device=emissions.device).expand(batch, sources)
        best = (transitions[:, 0, 0, :] + emissions[:, 0]).masked_fill(~valid, _LOG_ZERO)
        pointers = []
        for t in range(1, length):
            candidates = best[:, :, None] + transitions[:, t, 1:, :]            # [B, S', S]
            value, back = candidates.max(dim=1)
            value = (value + emissions[:, t]).masked_fill(~valid, _LOG_ZERO)
            real = steps[:, t]
            best = torch.where(real[:, None], value, best)
            pointers.append(torch.where(real[:, None], back, keep))
        score, last = best.max(dim=-1)
        path = [last]
        for back in reversed(pointers):
            last = back.gather(1, last[:, None]).squeeze(1)
            path.append(last)
        return torch.stack(path[::-1], 1), score

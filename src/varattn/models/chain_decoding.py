"""Decoding a first-order alignment chain (the ``hmm`` mode), shared by every translation architecture.

Under the chain, the next word's distribution is the exact mixture
``p(y_t | y_<t, x) = Σ_s p(z_t = s | y_<t) p(y_t | z_t = s, h_t)`` with the chain's predictive
``p(z_t | y_<t) = Σ_s' p(z_{t-1} = s' | y_<t) p(z_t | z_{t-1} = s', h_t)``, so every hypothesis carries
its filter ``p(z_{t-1} | y_<t)`` (forward vector) beside the architecture's own state. The filter is
updated one step late, when the search has chosen y_{t-1} and passes it back as ``prev_tokens``: the
step keeps each position's log-normaliser of the output layer, so the chosen word's emission
``log p(y_{t-1} | z = s, h_{t-1})`` costs one dot product per position instead of a second softmax over V.
With ``kmax > 0`` the predictive is truncated to its K most probable positions before the mixture and
the update, as :func:`varattn.latent.chain_forward` does with ``kmax``.

Dimensions: N rows (sentences x beam), S source positions, O output layer, V target vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from varattn.latent import chain_step_prior, chain_update, kmax_log_probs
from varattn.models.protocol import DecodeStep

__all__ = ["ChainState", "chain_step"]


@dataclass
class ChainState:
    """An architecture's decoding state plus the chain's: ``predictive`` ``[N, S]`` log p(z_{t-1} | y_<t-1)
    as used at the previous step, ``hidden_proj`` ``[N, O]`` that step's ``W_h h + b`` and
    ``normalisers`` ``[N, S]`` its output layer's log-normaliser per position (all None before the first
    step)."""

    inner: Any
    predictive: Optional[Tensor] = None
    hidden_proj: Optional[Tensor] = None
    normalisers: Optional[Tensor] = None

    def index_select(self, rows: Tensor) -> "ChainState":
        pick = (lambda t: None if t is None else t.index_select(0, rows))  # noqa: E731
        return ChainState(self.inner.index_select(rows), pick(self.predictive), pick(self.hidden_proj),
                          pick(self.normalisers))


def _emission(model, encoded, state: ChainState, tokens: Tensor) -> Tensor:
    """``log p(tokens | z = s, h_{t-1})`` ``[N, S]`` from the kept projection and normalisers."""
    generator = model.output.generator
    o = torch.tanh(state.hidden_proj[:, None, :] + encoded.out_memory).float()       # [N, S, O]
    logits = (o * generator.weight[tokens].float()[:, None, :]).sum(-1) + generator.bias[tokens].float()[:, None]
    return logits - state.normalisers


def chain_step(model, encoded, state: ChainState, prev_tokens: Tensor, hidden: Tensor, scores: Tensor,
               inner: Any, kmax: int = 0, cells: int = 512) -> DecodeStep:
    """One decoding step under the chain for rows ``[N]``.

    ``hidden`` ``[N, H]`` and content ``scores`` ``[N, S]`` are the architecture's step outputs for
    ``prev_tokens`` (y_{t-1}), ``inner`` its next state. Returns the next-word log-probabilities
    ``[N, V]``, the chain's predictive log p(z_t | y_<t) ``[N, S]`` as the step's prior scores, and the
    next :class:`ChainState`."""
    mask = encoded.mask
    filtered = None
    if state.predictive is not None:
        _, filtered = chain_update(state.predictive, _emission(model, encoded, state, prev_tokens))
    jumps = model.jumps(mask.size(1))
    if model.config.transition == "jump":
        scores = torch.zeros_like(scores)
    predictive = chain_step_prior(scores.float(), jumps, mask, filtered)              # [N, S]
    if 0 < kmax < predictive.size(-1):
        predictive = kmax_log_probs(predictive, mask, kmax).clamp_min(-1e30)
    weights = predictive.exp()                                                         # zero off the support
    hidden_proj = model.output_query(hidden)
    rows = max(1, cells // encoded.out_memory.size(1))
    pieces, normalisers = [], []
    for start in range(0, hidden_proj.size(0), rows):
        part = slice(start, start + rows)
        pre = hidden_proj[part, None, :] + encoded.out_memory[part]                    # [n, S, O]
        logits = model.output.generator(model.output.dropout(torch.tanh(pre))).float()  # [n, S, V]
        lse = logits.logsumexp(-1)
        probs = (logits - lse[..., None]).exp_()
        mixed = torch.bmm(weights[part, None, :], probs).squeeze(1)                    # [n, V]
        pieces.append(mixed.clamp_min(torch.finfo(mixed.dtype).tiny).log())
        normalisers.append(lse)
    next_state = ChainState(inner, predictive, hidden_proj, torch.cat(normalisers, 0))
    return DecodeStep(torch.cat(pieces, 0), predictive, next_state)

"""The output layer shared by every translation architecture, and its side of the latent contract.

``o = dropout(tanh(W_h h_t + W_x x_s + b))``, ``log p(y) = log_softmax(W_g o + b_g)``: the decoder state
h_t and one source vector x_s (or a convex combination of them) give the next-word distribution. As a
:class:`varattn.latent.Likelihood` it is evaluated at soft, sampled or one-hot alignments, or enumerated
over every source position block by block.

Dimensions: B batch, S source, T target, K points per query, H decoder state, M memory (source vector),
O output layer, V target vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varattn.latent import kmax_log_probs, masked_log_softmax
from varattn.modules.enumeration import enumerate_blockwise


class OutputLayer(nn.Module):
    """``o = dropout(tanh(W_h h + W_x x + b))``, ``log p(y) = log_softmax(W_g o + b_g)``.

    ``W_o [h; x] = W_h h + W_x x`` lets every context (soft, sampled, one-hot) be built from the
    projected source ``W_x x_s`` ``[B, S, O]``: a convex combination of contexts projects to the same
    combination of projections.
    """

    def __init__(self, hidden: int, memory_size: int, output_size: int, vocab: int, dropout: float):
        super().__init__()
        self.from_hidden = nn.Linear(hidden, output_size, bias=True)
        self.from_memory = nn.Linear(memory_size, output_size, bias=False)
        self.generator = nn.Linear(output_size, vocab)
        self.dropout = nn.Dropout(dropout)

    def query(self, hidden: Tensor, emission: str = "state") -> Tensor:
        """The decoder state's share of the pre-activation ``[..., O]``: ``W_h h + b`` with
        ``emission="state"`` (the paper's), or the bias alone with ``emission="source"`` or ``"word"``, where
        the word is predicted from the attended source vector or source word only (``p(y | x_s)``)."""
        if emission != "state":
            return self.from_hidden.bias.expand(*hidden.shape[:-1], -1)
        return self.from_hidden(hidden)

    def log_probs(self, pre: Tensor) -> Tensor:
        """pre-activation ``[..., O]`` -> log-probabilities ``[..., V]`` in float32."""
        return F.log_softmax(self.generator(self.dropout(torch.tanh(pre))).float(), dim=-1)

    def probs(self, pre: Tensor) -> Tensor:
        """pre-activation ``[..., O]`` -> probabilities ``[..., V]`` in float32."""
        return F.softmax(self.generator(self.dropout(torch.tanh(pre))).float(), dim=-1)

    def next_word_log_probs(self, query: Tensor, out_memory: Tensor, mask: Tensor, scores: Tensor, *,
                            soft: bool, kmax: int = 0, cells: int = 512) -> Tensor:
        """The decoding rule every architecture shares: next-word log-probabilities ``[N, V]``.

        query ``[N, O]`` (:meth:`query` of the decoder state), out_memory ``[N, S, O]`` (the projected
        source), mask ``[N, S]``, scores ``[N, S]`` the prior's. ``soft``: the expected context's
        distribution; otherwise the exact marginal ``log Σ_s p(s) p(y | h, x_s)``, or over the ``kmax``
        most probable positions (renormalised) when ``kmax > 0``.

        The mixture is taken in probability space, a block of about ``cells`` (row, position) pairs at a
        time (their ``[cells, V]`` distributions stay in cache): one softmax over V per pair, then one
        ``[1, S] x [S, V]`` product per row with the prior — instead of log_softmax, a broadcast add and a
        logsumexp over S, which cost three more passes over ``[n, S, V]``. Words whose mixed probability
        underflows float32 (below ~1e-38) get ``log(tiny)`` ≈ -87.3 instead of their exact value; they are
        never among a beam's candidates.
        """
        log_prior = masked_log_softmax(scores.float(), mask)
        if soft:
            context = torch.bmm(log_prior.exp().to(out_memory.dtype)[:, None, :], out_memory).squeeze(1)
            return self.log_probs(query + context)
        if 0 < kmax < log_prior.size(-1):
            log_prior, index = kmax_log_probs(scores.float(), mask, kmax).topk(kmax, dim=-1)
            out_memory = out_memory.gather(1, index[..., None].expand(-1, -1, out_memory.size(-1)))
        prior = log_prior.exp()  # [N, S'], zero on masked positions
        rows = max(1, cells // out_memory.size(1))
        pieces = []
        for start in range(0, query.size(0), rows):
            part = slice(start, start + rows)
            probs = self.probs(query[part, None, :] + out_memory[part])  # [n, S', V]
            mixed = torch.bmm(prior[part, None, :].to(probs.dtype), probs).squeeze(1)  # [n, V]
            pieces.append(mixed.clamp_min(torch.finfo(mixed.dtype).tiny).log())
        return torch.cat(pieces, 0)

    def target_log_probs(self, pre: Tensor, targets: Tensor, shared_dim: int | None = None) -> Tensor:
        """pre ``[..., O]``, targets ``[...]`` -> ``log p(target)`` ``[...]``. With ``shared_dim``, every
        entry along that dimension of ``pre`` gets the same dropout mask."""
        o = torch.tanh(pre)
        if shared_dim is None or not self.training or self.dropout.p == 0 or o.shape[shared_dim] == 1:
            o = self.dropout(o)
        else:
            keep = 1.0 - self.dropout.p
            shape = list(o.shape)
            shape[shared_dim] = 1
            o = o * (torch.empty(shape, dtype=o.dtype, device=o.device).bernoulli_(keep) / keep)
        logits = self.generator(o).float()
        # log_softmax + NLL in one fused kernel each way: faster than gather - logsumexp, whose backward
        # materialises exp(logits - lse) and a scattered one-hot separately
        return -F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                reduction="none").view(targets.shape)


class TokenLikelihood:
    """``log p(y_t | h_t, context)`` for a whole batch: the NMT side of the ``Likelihood`` protocol.

    hidden_proj ``[B, T, O]`` (``W_h h_t + b``), out_memory ``[B, S, O]`` (``W_x x_s``), targets
    ``[B, T]``. :meth:`enumerate` is computed block by block of ``block`` (token, position) cells by a
    custom autograd Function that recomputes each block's logits in the backward pass, so at most one
    block of ``[cells, V]`` floats is alive at once; when the whole batch fits in one block nothing is
    recomputed (see :mod:`varattn.modules.enumeration`).
    """

    def __init__(self, layer: OutputLayer, hidden_proj: Tensor, out_memory: Tensor, targets: Tensor,
                 block: int):
        self.layer = layer
        self.hidden_proj = hidden_proj
        self.out_memory = out_memory
        self.targets = targets
        self.block = block

    def __call__(self, weights: Tensor) -> Tensor:
        """weights ``[B, T, K, S]`` on the simplex -> ``[B, T, K]``.

        The K points of a token share one dropout mask (common random numbers): their log-likelihoods
        then differ by the alignment alone, so a REINFORCE reward ``ℓ(z) - ℓ(baseline)`` carries no dropout
        noise — with independent masks that noise was about twice the spread of ℓ over source positions
        and kept ``vae-sample``'s q near uniform (benchmarks/results/vae_sample.md)."""
        batch, length, points, sources = weights.shape
        weights = weights.to(self.out_memory.dtype).reshape(batch, length * points, sources)
        # one [T·K, S] x [S, O] product per sentence: broadcasting out_memory over T would copy it T times
        context = torch.bmm(weights, self.out_memory).view(batch, length, points, -1)  # [B, T, K, O]
        pre = self.hidden_proj[:, :, None, :] + context
        targets = self.targets[:, :, None].expand(pre.shape[:-1])
        return self.layer.target_log_probs(pre, targets, shared_dim=2)

    def enumerate(self) -> Tensor:
        """``log p(y_t | h_t, x_s)`` for every source position: ``[B, T, S]`` (float32; float64 for float64
        inputs), by :func:`varattn.modules.enumeration.enumerate_blockwise`."""
        batch, length, _ = self.hidden_proj.shape
        sources = self.out_memory.size(1)
        rows = self.hidden_proj.reshape(batch * length, -1)
        row_batch = torch.arange(batch, device=rows.device).repeat_interleave(length)
        generator = self.layer.generator
        values = enumerate_blockwise(rows, self.out_memory, row_batch, self.targets.reshape(-1), generator.weight,
                                     generator.bias, self.block // max(1, sources), self.layer.dropout.p,
                                     self.layer.training)
        return values.view(batch, length, sources)

    def enumerate_at(self, index: Tensor) -> Tensor:
        """``log p(y_t | h_t, x_s)`` at the K source positions ``index`` ``[B, T, K]`` (int64) of each
        token only: ``[B, T, K]``, the blockwise enumeration over each token's own K projected source
        vectors ``[B·T, K, O]`` — K instead of S softmaxes over V per token (truncated enumeration,
        :func:`varattn.latent.enumerate_positions`)."""
        batch, length, k = index.shape
        sources = self.out_memory.size(1)
        rows = self.hidden_proj.reshape(batch * length, -1)
        flat = index + torch.arange(batch, device=index.device)[:, None, None] * sources
        memory = self.out_memory.reshape(batch * sources, -1).index_select(0, flat.reshape(-1))
        own = torch.arange(batch * length, device=rows.device)
        generator = self.layer.generator
        values = enumerate_blockwise(rows, memory.view(batch * length, k, -1), own, self.targets.reshape(-1),
                                     generator.weight, generator.bias, self.block // max(1, k),
                                     self.layer.dropout.p, self.layer.training)
        return values.view(batch, length, k)


class SourceLikelihood(TokenLikelihood):
    """:class:`TokenLikelihood` for an emission that ignores the decoder state (``hidden_proj`` is the
    output layer's bias for every token): ``log p(y | x_s)`` depends on the source position alone, so
    :meth:`enumerate` normalises over V once per source position — ``[B, S, V]`` — and gathers every
    target token from it, T times less work than one softmax per (token, position) cell."""

    def enumerate(self) -> Tensor:
        """``log p(y_t | x_s)`` ``[B, T, S]`` (float32; float64 for float64 inputs)."""
        bias = self.hidden_proj[:, :1, :]                                             # [B, 1, O]
        logits = self.layer.generator(self.layer.dropout(torch.tanh(self.out_memory + bias)))  # [B, S, V]
        dtype = torch.promote_types(logits.dtype, torch.float32)
        log_probs = logits.to(dtype).log_softmax(-1)
        index = self.targets[:, None, :].expand(-1, log_probs.size(1), -1)            # [B, S, T]
        return log_probs.gather(-1, index).transpose(1, 2)

    def enumerate_at(self, index: Tensor) -> Tensor:
        """``[B, T, K]`` at positions ``index`` ``[B, T, K]``: :meth:`enumerate` gathered, since its cost is
        one softmax per source position whichever positions the tokens keep (truncation saves nothing)."""
        return self.enumerate().gather(-1, index)

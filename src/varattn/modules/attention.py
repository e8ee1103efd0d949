"""Scorers that turn a query and a memory into unnormalised alignment scores.

Both return scores ``[..., S]``; masking and normalisation belong to :mod:`varattn.latent`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPScorer(nn.Module):
    """Additive attention: ``score(t, s) = v · tanh(W_q h_t + W_c x_s)``.

    The memory projection ``W_c x_s`` depends only on the source, so it is computed once per batch by
    :meth:`project_memory` and reused at every decoder step.
    """

    def __init__(self, query_size: int, memory_size: int, attn_size: int):
        super().__init__()
        self.query = nn.Linear(query_size, attn_size, bias=True)
        self.memory = nn.Linear(memory_size, attn_size, bias=False)
        self.v = nn.Linear(attn_size, 1, bias=False)

    def project_memory(self, memory: Tensor) -> Tensor:
        """memory ``[B, S, M]`` -> ``[B, S, A]``."""
        return self.memory(memory)

    def forward(self, query: Tensor, memory_proj: Tensor) -> Tensor:
        """query ``[B, H]`` or ``[B, T, H]``; memory_proj ``[B, S, A]`` -> scores ``[B, S]`` / ``[B, T, S]``."""
        q = self.query(query)
        if q.dim() == 2:
            return self.v(torch.tanh(memory_proj + q[:, None, :])).squeeze(-1)
        return self.v(torch.tanh(memory_proj[:, None, :, :] + q[:, :, None, :])).squeeze(-1)


class BilinearScorer(nn.Module):
    """Bilinear attention: ``score(t, s) = g_t^T U x_s``."""

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.U = nn.Linear(memory_size, query_size, bias=False)

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        """query ``[B, T, Hq]``, memory ``[B, S, M]`` -> scores ``[B, T, S]``."""
        return torch.bmm(query, self.U(memory).transpose(1, 2))

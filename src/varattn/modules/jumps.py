"""Jump scores of a first-order alignment chain (the ``hmm`` mode): one learned score per jump width.

The chain of :mod:`varattn.latent.chain` moves from position s' to s with probability
``softmax_s(a_t(s) + J(s - s'))``: the model's attention score a_t(s) says *what* the decoder looks for,
J says *how far* alignments tend to move — the distortion model of the classical HMM aligner (Vogel,
Ney and Tillmann, 1996), here learned jointly with the network. Jumps wider than ``width`` share the
edge bucket, so the table is the same for every sentence length; the first move is scored as a jump
from a virtual position before the first word.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from varattn.latent.chain import jump_buckets


class JumpScores(nn.Module):
    """``2 * width + 1`` learned scores -> the jump table ``[1, S + 1, S]`` for S positions.

    They start at ``-slope * |d - 1|`` for jump d (0: flat, where the chain is the independent model;
    a positive slope starts near the monotone alignment, as fast_align's diagonal prior does)."""

    def __init__(self, width: int, slope: float = 0.0):
        super().__init__()
        self.width = int(width)
        self.slope = float(slope)
        self.bias = nn.Parameter(torch.zeros(2 * self.width + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            jumps = torch.arange(-self.width, self.width + 1, dtype=self.bias.dtype)
            self.bias.copy_(-self.slope * (jumps - 1).abs())

    def forward(self, sources: int) -> Tensor:
        return self.bias[jump_buckets(sources, self.width, self.bias.device)][None]

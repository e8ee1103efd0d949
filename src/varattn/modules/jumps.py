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
    """``2 * width + 1`` learned scores -> the jump table ``[1, S + 1, S]`` for S positions."""

    def __init__(self, width: int):
        super().__init__()
        self.width = int(width)
        self.bias = nn.Parameter(torch.zeros(2 * self.width + 1))

    def forward(self, sources: int) -> Tensor:
        return self.bias[jump_buckets(sources, self.width, self.bias.device)][None]

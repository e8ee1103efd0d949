"""Ensembles: several trained models decoded as one, by averaging their next-word probabilities.

An :class:`Ensemble` implements the decoding protocol (:mod:`varattn.models.protocol`), so beam search,
greedy search, n-best and K-max work on it unchanged. At each step every member gives its next-word
distribution ``p_m(y_t | x, y_<t)`` (the soft model's, or the marginal over the alignment under the
prior); the ensemble's is their mean, ``log (1/M) Σ_m p_m``, as fairseq and OpenNMT-py ensemble. Its
prior over source positions (what the search reports as the link of each word) is the members' mean
prior. Members may differ in architecture and latent mode; they must share the vocabularies, which the
caller checks (:func:`check_same_vocabularies`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from varattn.errors import UserError
from varattn.models.protocol import DecodeStep

__all__ = ["Ensemble", "check_same_vocabularies"]


@dataclass
class EnsembleEncoded:
    """Every member's encoding of the same sources; ``mask`` ``[B, S]`` and ``src_lengths`` ``[B]`` are
    the first member's (all members see the same source ids)."""

    members: tuple
    mask: Tensor
    src_lengths: Tensor

    def index_select(self, rows: Tensor) -> "EnsembleEncoded":
        return EnsembleEncoded(tuple(e.index_select(rows) for e in self.members), self.mask.index_select(0, rows),
                               self.src_lengths.index_select(0, rows))


@dataclass
class EnsembleState:
    """Every member's decoder state, in member order."""

    members: tuple

    def index_select(self, rows: Tensor) -> "EnsembleState":
        return EnsembleState(tuple(s.index_select(rows) for s in self.members))


class Ensemble(nn.Module):
    """Models decoded together (see the module docstring). ``models``: at least two decodable models on
    the same device with the same target vocabulary."""

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if len(models) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
        sizes = {m.output.generator.out_features for m in models}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members have different target vocabularies: sizes {sorted(sizes)}")
        self.members = nn.ModuleList(models)

    @property
    def output(self) -> nn.Module:
        """The first member's output layer (what decoding reads the target vocabulary size from)."""
        return self.members[0].output

    def encode(self, src: Tensor, src_lengths: Tensor) -> EnsembleEncoded:
        """src ``[B, S]``, src_lengths ``[B]`` -> every member's encoding."""
        encoded = tuple(m.encode(src, src_lengths) for m in self.members)
        return EnsembleEncoded(encoded, encoded[0].mask, encoded[0].src_lengths)

    def start(self, encoded: EnsembleEncoded) -> EnsembleState:
        return EnsembleState(tuple(m.start(e) for m, e in zip(self.members, encoded.members)))

    def step(self, encoded: EnsembleEncoded, state: EnsembleState, prev_tokens: Tensor, kmax: int = 0
             ) -> DecodeStep:
        """prev_tokens ``[N]`` -> the mean next-word distribution ``[N, V]`` (log, float32), the members'
        mean prior ``[N, S]`` (log; padded positions -inf) and every member's next state."""
        steps = [m.step(e, s, prev_tokens, kmax=kmax)
                 for m, e, s in zip(self.members, encoded.members, state.members)]
        count = math.log(len(steps))
        log_probs = torch.stack([s.log_probs.float() for s in steps]).logsumexp(0) - count
        priors = torch.stack([s.prior.float().masked_fill(~encoded.mask, float("-inf")).log_softmax(-1)
                              for s in steps])
        prior = priors.logsumexp(0) - count
        return DecodeStep(log_probs, prior, EnsembleState(tuple(s.state for s in steps)))


def check_same_vocabularies(first, others: list, names: list[str]) -> None:
    """UserError unless every run of ``others`` (named by ``names``) has the source and target
    vocabularies of the run ``first``: an ensemble's members read the same ids."""
    for other, name in zip(others, names):
        if other.data.src_vocab != first.data.src_vocab or other.data.tgt_vocab != first.data.tgt_vocab:
            raise UserError(f"{name}: its vocabularies differ from {first.checkpoint.parent}'s — ensemble only "
                            "runs trained on the same prepared data")

"""The decoding protocol: what beam search (:mod:`varattn.decoding.search`) needs from a translation model.

Any architecture that implements it decodes with the same search, K-max and n-best. Rows ``N`` are the
live hypotheses (sentences x beam, flattened); ``S`` source positions; ``V`` target vocabulary.

- ``encode(src [B, S], src_lengths [B]) -> Encoded``: whatever the decoder needs from the source, with
  ``mask`` ``[B, S]`` (True = real token), ``src_lengths`` ``[B]`` and ``index_select(rows)``.
- ``start(encoded) -> state``: the decoder state before the first word (an object with
  ``index_select(rows)``; e.g. recurrent states, or a key/value cache).
- ``step(encoded, state, prev_tokens [N], kmax=0) -> DecodeStep``: the next-word log-probabilities
  ``[N, V]`` (the soft model's, or ``log Σ_s p(s) p(y | s)`` under the prior, exactly or over the ``kmax``
  most probable positions), the prior scores ``[N, S]`` (unmasked) and the next state.

Reordering after each step is ``state.index_select(rows)`` (and ``encoded.index_select(rows)`` when
sentences leave the batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class Encoded(Protocol):
    mask: Tensor
    src_lengths: Tensor

    def index_select(self, rows: Tensor) -> "Encoded": ...


@dataclass
class DecodeStep:
    """One decoding step: log_probs ``[N, V]`` (float32), prior ``[N, S]`` scores, the next state."""

    log_probs: Tensor
    prior: Tensor
    state: Any


@runtime_checkable
class Decodable(Protocol):
    def encode(self, src: Tensor, src_lengths: Tensor) -> Encoded: ...

    def start(self, encoded: Encoded) -> Any: ...

    def step(self, encoded: Encoded, state: Any, prev_tokens: Tensor, kmax: int = 0) -> DecodeStep: ...


class CrossAttentionMaps:
    """A capability: a model whose decoder has soft cross-attention maps besides the latent alignment
    (the Transformer). Alignment code checks ``isinstance(model, CrossAttentionMaps)``, never the methods.

    - ``select_heads(layer, head)``: which map :meth:`cross_alignment` gives (None averages that axis);
    - ``cross_alignment(src [B, S], src_lengths [B], tgt_in [B, T]) -> [B, T, S] | None``: the chosen map as
      probabilities, None when the decoder has no soft cross-attention.
    """

    def select_heads(self, layer: int | None = None, head: int | None = None) -> None:
        raise NotImplementedError

    def cross_alignment(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor | None:
        raise NotImplementedError

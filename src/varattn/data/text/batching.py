"""Token-budget batching with length bucketing, and collation into padded tensors.

:class:`TokenBatcher` groups pairs of similar lengths so that each batch's *padded* size
``#pairs x (max source length + max target length + 2)`` stays within ``max_tokens`` (the ``+2`` counts
the BOS/EOS the target gains), like fairseq's ``--max-tokens``. A pair over the budget on its own forms a
batch of one. Every pair appears in exactly one batch per epoch; the batches of an epoch are a pure
function of ``(seed, epoch)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from varattn.data.vocab import BOS, EOS, PAD

__all__ = ["TokenBatcher", "Batch", "collate"]


class TokenBatcher:
    """Length-bucketed batches of pair indices under a padded token budget.

    Args:
        src_lengths, tgt_lengths: int [N] token counts of each pair (no BOS/EOS).
        max_tokens: budget for ``#pairs x (max src len + max tgt len + 2)`` per batch.
        max_sentences: optional cap on pairs per batch.
        shuffle: draw length ties and the batch order at random (seeded); without it the batches are
            fixed (sorted by length, ties by index) for evaluation.
        seed: base seed; epoch ``e`` uses ``(seed, e)``.
    """

    def __init__(
        self,
        src_lengths: Sequence[int] | np.ndarray,
        tgt_lengths: Sequence[int] | np.ndarray,
        max_tokens: int,
        *,
        max_sentences: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64)
        if self.src_lengths.shape != self.tgt_lengths.shape or self.src_lengths.ndim != 1:
            raise ValueError("src_lengths and tgt_lengths must be 1-D and of equal length")
        if max_tokens < 1:
            raise ValueError("max_tokens must be positive")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError("max_sentences must be positive")
        self.max_tokens = int(max_tokens)
        self.max_sentences = max_sentences
        self.shuffle = shuffle
        self.seed = int(seed)
        self._fixed: list[np.ndarray] | None = None

    def __len__(self) -> int:
        """Number of pairs (not batches)."""
        return len(self.src_lengths)

    def batches(self, epoch: int = 0) -> list[np.ndarray]:
        """The batches of ``epoch``: int64 arrays of pair indices covering every pair exactly once."""
        if not self.shuffle:
            if self._fixed is None:
                ties = np.arange(len(self))
                self._fixed = self._group(np.lexsort((ties, self.tgt_lengths, self.src_lengths)))
            return [b.copy() for b in self._fixed]
        rng = np.random.default_rng([self.seed, int(epoch)])
        tie = rng.permutation(len(self))
        order = np.lexsort((tie, self.tgt_lengths, self.src_lengths))
        groups = self._group(order)
        return [groups[i] for i in rng.permutation(len(groups))]

    def _group(self, order: np.ndarray) -> list[np.ndarray]:
        """Cut ``order`` (pair indices sorted by length) into consecutive batches within the budget."""
        src = self.src_lengths[order]
        tgt = self.tgt_lengths[order]
        out: list[np.ndarray] = []
        start, max_s, max_t = 0, 0, 0
        for k in range(len(order)):
            s, t = int(src[k]), int(tgt[k])
            ns, nt = max(max_s, s), max(max_t, t)
            n = k - start + 1
            full = self.max_sentences is not None and n > self.max_sentences
            if k > start and (full or n * (ns + nt + 2) > self.max_tokens):
                out.append(order[start:k])
                start, ns, nt = k, s, t
            max_s, max_t = ns, nt
        if len(order):
            out.append(order[start:])
        return [np.asarray(b, dtype=np.int64) for b in out]


@dataclass
class Batch:
    """A padded batch (PAD = 0).

    Attributes:
        src: long [B, S] source ids, no BOS/EOS.
        src_lengths: long [B].
        tgt_in: long [B, T] = ``BOS y_1 .. y_n`` (decoder input), T = max n + 1.
        tgt_out: long [B, T] = ``y_1 .. y_n EOS`` (prediction target).
        tgt_lengths: long [B] = n + 1.
        indices: long [B] pair indices in the split.
    """

    src: torch.Tensor
    src_lengths: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_lengths: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return self.src.shape[0]

    @property
    def num_tgt_tokens(self) -> int:
        """Target tokens predicted in this batch (including EOS)."""
        return int(self.tgt_lengths.sum())

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(
            *(
                t.to(device, non_blocking=non_blocking)
                for t in (
                    self.src,
                    self.src_lengths,
                    self.tgt_in,
                    self.tgt_out,
                    self.tgt_lengths,
                    self.indices,
                )
            )
        )


class IdPairs:
    """Token-id sequences in memory with the ``src(i)``/``tgt(i)`` interface :func:`collate` reads (a
    prepared split offers the same)."""

    def __init__(self, src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]]):
        self._src = [np.asarray(s, dtype=np.int64) for s in src]
        self._tgt = [np.asarray(t, dtype=np.int64) for t in tgt]

    def __len__(self) -> int:
        return len(self._src)

    def src(self, i: int) -> np.ndarray:
        return self._src[i]

    def tgt(self, i: int) -> np.ndarray:
        return self._tgt[i]


def collate(split, indices: Sequence[int] | np.ndarray) -> Batch:
    """Pad the pairs ``indices`` of ``split`` (anything with ``src(i)`` and ``tgt(i)`` id arrays)."""
    idx = [int(i) for i in indices]
    srcs = [split.src(i) for i in idx]
    tgts = [split.tgt(i) for i in idx]
    B = len(idx)
    S = max((len(s) for s in srcs), default=0)
    T = max((len(t) for t in tgts), default=0) + 1
    src = np.full((B, max(S, 1)), PAD, dtype=np.int64)
    tgt_in = np.full((B, T), PAD, dtype=np.int64)
    tgt_out = np.full((B, T), PAD, dtype=np.int64)
    for b, (s, t) in enumerate(zip(srcs, tgts)):
        src[b, : len(s)] = s
        n = len(t)
        tgt_in[b, 0] = BOS
        tgt_in[b, 1 : n + 1] = t
        tgt_out[b, :n] = t
        tgt_out[b, n] = EOS
    return Batch(
        src=torch.from_numpy(src),
        src_lengths=torch.tensor([len(s) for s in srcs], dtype=torch.long),
        tgt_in=torch.from_numpy(tgt_in),
        tgt_out=torch.from_numpy(tgt_out),
        tgt_lengths=torch.tensor([len(t) + 1 for t in tgts], dtype=torch.long),
        indices=torch.tensor(idx, dtype=torch.long),
    )

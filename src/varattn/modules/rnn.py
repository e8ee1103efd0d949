"""Packed recurrent networks over padded batches."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def run_packed(rnn: nn.LSTM, inputs: Tensor, lengths: Tensor) -> Tensor:
    """Run a batch-first LSTM over padded inputs ``[B, L, E]`` with ``lengths [B]``.

    Padding never enters the recurrence (so a sequence's output does not depend on the batch it is
    in), and the output ``[B, L, D]`` is zero at padded steps.
    """
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, _ = rnn(packed)
    output, _ = pad_packed_sequence(output, batch_first=True, total_length=inputs.size(1))
    return output

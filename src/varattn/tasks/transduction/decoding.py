"""Beam search over a transduction split and its WER / PER (the task's validation scores and
`varattn evaluate`'s decoding)."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from varattn.config import DecodeConfig
from varattn.data.vocab import UNK
from varattn.decoding.translate import decode_ids
from varattn.tasks.transduction import metrics

__all__ = ["decode_split"]


@torch.no_grad()
def decode_split(model: torch.nn.Module, device: torch.device, split, decode: DecodeConfig) -> dict:
    """Beam-search every source of ``split`` with ``decode``: ``hypotheses`` (target id lists), ``wer``
    and ``per`` (percent) against the split's target ids. A hypothesis' ``<unk>`` matches nothing, so a
    reference symbol outside the vocabulary is always an error, as when comparing the symbols as text.
    Where the split's target marks were split off (``split.target_marks``), WER and PER compare the
    symbols they join back into."""
    was_training = model.training
    model.eval()
    found = decode_ids(SimpleNamespace(model=model, device=device),
                       [split.src(i).tolist() for i in range(len(split))], decode)
    model.train(was_training)
    hypotheses = [[int(t) for t in h.tokens] for h in found]
    marks = split.target_marks
    compared = [symbols([-1 if t == UNK else t for t in h], marks) for h in hypotheses]
    references = [symbols(split.tgt(i).tolist(), marks) for i in range(len(split))]
    return {"hypotheses": hypotheses, "wer": metrics.wer(compared, references),
            "per": metrics.per(compared, references)}


def symbols(ids: list[int], marks: frozenset) -> list[tuple[int, ...]]:
    """Target ids -> symbols as id tuples: each id in ``marks`` joins the symbol before it (one at the
    start stands alone), as :func:`varattn.data.marks.join_marks` joins their text."""
    out: list[tuple[int, ...]] = []
    for token in ids:
        if out and token in marks:
            out[-1] += (token,)
        else:
            out.append((token,))
    return out

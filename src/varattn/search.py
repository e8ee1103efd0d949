"""Decoding: greedy search over the next-word distribution of a soft or latent model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .data.vocab import BOS, EOS
from .seq2seq import Seq2Seq


@dataclass
class Hypothesis:
    """One output: target ids (no BOS/EOS), its log-probability, and per token the prior's argmax
    source position."""

    tokens: list[int]
    score: float
    alignment: list[int]


def max_lengths(src_lengths: Tensor, a: float, b: int) -> Tensor:
    """Maximum output length per sentence: ``a * |x| + b`` tokens, ``</s>`` excluded."""
    return (src_lengths.float() * a + b).long().clamp(min=1)


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, src_lengths: Tensor, *, max_len_a: float = 1.5,
           max_len_b: int = 10, kmax: int = 0) -> list[Hypothesis]:
    """Batched greedy decoding. src ``[B, S]``, src_lengths ``[B]`` -> one hypothesis per row."""
    encoded = model.encode(src, src_lengths)
    state = model.decoder.start(encoded)
    rows = src.size(0)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(src.device)
    prev = torch.full((rows,), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(rows, dtype=torch.bool, device=src.device)
    scores = torch.zeros(rows, dtype=torch.float64, device=src.device)
    outputs, links = [], []
    for t in range(int(limit.max()) + 1):
        hidden, prior, state = model.decoder.step(encoded, state, prev)
        log_probs = model.next_log_probs(encoded, hidden, prior, kmax=kmax)
        forced = t >= limit
        choice = torch.where(forced, torch.full_like(prev, EOS), log_probs.argmax(-1))
        scores += torch.where(done, 0.0, log_probs.gather(1, choice[:, None]).squeeze(1).double())
        outputs.append(torch.where(done, EOS, choice))
        links.append(prior.masked_fill(~encoded.mask, float("-inf")).argmax(-1))
        done |= choice == EOS
        prev = choice
        if bool(done.all()):
            break
    tokens = torch.stack(outputs, 1).tolist()
    align = torch.stack(links, 1).tolist()
    hypotheses = []
    for row in range(rows):
        length = tokens[row].index(EOS) if EOS in tokens[row] else len(tokens[row])
        hypotheses.append(Hypothesis(tokens[row][:length], float(scores[row]), align[row][:length]))
    return hypotheses

"""Which letters produce which phones: the exact posterior of a latent alignment, and how monotone an
alignment is.

For a model whose alignment z_t can be enumerated (``marginal``, ``hard-enum``, ``vae-enum``, ...; not
``soft`` nor ``vae-dirichlet``), the exact posterior of the symbol at output position t given the output
so far is

    p(z_t = s | x, y≤t) = p(z_t = s | x, y<t) p(y_t | z_t = s, x, y<t) / Σ_s' p(z_t = s' | x, y<t) p(y_t | z_t = s', x, y<t),

the prior re-weighted by how well each source position explains the symbol actually produced; its
normaliser is the model's exact p(y_t | x, y<t). ``varattn align`` writes the prior (and q for ``vae-*``);
this module gives the exact posterior as matrices of the same shape (rows: output symbols then ``</s>``,
columns: source characters), and :func:`monotonicity`, a check of alignments without gold links:
letter-to-sound alignments of alphabetic scripts are almost monotone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from varattn import latent
from varattn.data.text.batching import IdPairs, TokenBatcher, collate
from varattn.errors import UserError
from varattn.latent import get_mode

__all__ = ["exact_posteriors", "monotonicity"]


@torch.no_grad()
def exact_posteriors(run, src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Per pair of id sequences (no BOS/EOS) the float64 matrix [T + 1, S] of p(z_t | x, y≤t), rows
    summing to 1, teacher-forced; ``run`` is a loaded run (``model``, ``device``, ``config``)."""
    mode = get_mode(run.config.model.mode)
    if not mode.enumerable:
        raise UserError(f"mode {mode.name}: has no enumerable alignment, so no exact posterior — use a run of "
                        "marginal, hard-enum or a vae-* mode with a categorical alignment")
    model = run.model
    pairs = IdPairs(src_ids, tgt_ids)
    batcher = TokenBatcher([len(s) for s in src_ids], [len(t) for t in tgt_ids], run.config.data.eval_max_tokens,
                           shuffle=False)
    was_training = model.training
    model.eval()
    out: list[np.ndarray | None] = [None] * len(src_ids)
    for rows in batcher.batches(0):
        batch = collate(pairs, rows).to(run.device)
        fwd = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
        log_prior = latent.masked_log_softmax(fwd.prior.float(), fwd.mask)           # [B, T, S]
        joint = log_prior + fwd.likelihood.enumerate().float()                        # log p(z_t = s, y_t)
        posterior = latent.masked_log_softmax(joint, fwd.mask).exp().double().cpu().numpy()
        for row, i in enumerate(rows.tolist()):
            out[i] = posterior[row, : len(tgt_ids[i]) + 1, : len(src_ids[i])]
    model.train(was_training)
    return out  # type: ignore[return-value]


def monotonicity(matrices: Sequence[np.ndarray]) -> dict:
    """How monotone the argmax links of alignment matrices [T + 1, S] are (the ``</s>`` row left out):
    ``monotone_steps``, the share of consecutive output symbols whose source position does not move
    back; ``monotone_words``, the share of words with no step back; ``covered``, the share of source
    characters linked by at least one symbol."""
    steps = forward = words = monotone = covered = characters = 0
    for matrix in matrices:
        best = matrix[:-1].argmax(-1)
        moves = np.diff(best)
        steps += len(moves)
        forward += int((moves >= 0).sum())
        words += 1
        monotone += int((moves >= 0).all())
        covered += len(set(best.tolist()))
        characters += matrix.shape[1]
    return {"monotone_steps": forward / steps if steps else 1.0, "monotone_words": monotone / words if words else 1.0,
            "covered": covered / characters if characters else 0.0, "words": words}

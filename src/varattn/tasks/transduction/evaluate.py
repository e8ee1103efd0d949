"""`varattn evaluate` for transduction runs: the translation scores (exact PPL, K-max PPL, prior
entropy, ELBO and KL where the model has q) and WER / PER of beam search on the split."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch

from varattn.config import DecodeConfig
from varattn.data.vocab import UNK
from varattn.decoding.translate import decode_ids
from varattn.tasks.transduction import metrics
from varattn.tasks.translation_scores import score_split
from varattn.training.runs import LoadedRun, check_vocabularies

__all__ = ["decode_split", "evaluate_transduction"]

OPTIONAL_KEYS = ("kmax_ppl", "elbo_ppl", "kl")


@torch.no_grad()
def decode_split(model: torch.nn.Module, device: torch.device, split, decode: DecodeConfig) -> dict:
    """Beam-search every source of ``split`` with ``decode``: ``hypotheses`` (target id lists), ``wer``
    and ``per`` (percent) against the split's target ids. A hypothesis' ``<unk>`` matches nothing, so a
    reference symbol outside the vocabulary is always an error, as when comparing the symbols as text."""
    was_training = model.training
    model.eval()
    found = decode_ids(SimpleNamespace(model=model, device=device),
                       [split.src(i).tolist() for i in range(len(split))], decode)
    model.train(was_training)
    hypotheses = [[int(t) for t in h.tokens] for h in found]
    compared = [[-1 if t == UNK else t for t in h] for h in hypotheses]
    references = [split.tgt(i).tolist() for i in range(len(split))]
    return {"hypotheses": hypotheses, "wer": metrics.wer(compared, references),
            "per": metrics.per(compared, references)}


def evaluate_transduction(run: LoadedRun, data, split_name: str, *, kmax: tuple[int, ...] = (1, 2, 3, 5),
                          bleu: bool = True, decode: DecodeConfig | None = None) -> dict:
    """Every score of `varattn evaluate` on ``split_name`` of a transduction folder; ``bleu`` (the flag
    `--no-bleu` turns off) decodes and adds ``wer``, ``per``, ``words`` and the decoding settings."""
    check_vocabularies(run, data, "evaluate on")
    split = data.split(split_name)
    config = run.config
    results = {"split": split_name, "checkpoint": str(run.checkpoint), "mode": config.model.mode}
    results.update(score_split(run.model, split, run.device, max_tokens=config.data.eval_max_tokens, kmax=kmax,
                               samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16,
                               progress=True))
    for key in OPTIONAL_KEYS:
        results.setdefault(key, None)
    if bleu:
        decode = decode or config.decode
        found = decode_split(run.model, run.device, split, decode)
        results.update(wer=found["wer"], per=found["per"], words=len(split), decoding=dataclasses.asdict(decode))
    return results

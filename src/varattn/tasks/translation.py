"""Translation as a :class:`varattn.tasks.Task`: prepared parallel text, the Seq2Seq model, token losses,
and what ``varattn evaluate`` reports (scores, AER, BLEU)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Callable

import sacrebleu
import torch

from varattn import latent, memory, stopping
from varattn.config import Config, DecodeConfig, ModelConfig
from varattn.decoding.translate import decode_ids
from varattn.data.text.batching import TokenBatcher, collate
from varattn.data.text.prepared import PreparedData, load_prepared
from varattn.tasks.translation_scores import score_split, validation_metric
from varattn.errors import UserError
from varattn.models.registry import build_translation_model
from varattn.tasks.base import Task


# Keys that only some models have; `varattn evaluate` lists them as null ("n/a") for the others.
OPTIONAL_KEYS = ("kmax_ppl", "elbo_ppl", "kl")


def check_vocabularies(run, data, purpose: str) -> None:
    """UserError unless translation ``data`` has the run's vocabularies (``purpose``: what the data is
    for, e.g. "evaluate on")."""
    if data.src_vocab != run.data.src_vocab or data.tgt_vocab != run.data.tgt_vocab:
        raise UserError(f"{data.path}: its vocabularies differ from the run's ({run.checkpoint.parent}/data) — "
                        f"{purpose} data prepared together with the training data")


def split_scores(run, data, split_name: str, kmax, limit: int | None, unit: str):
    """The split (its first ``limit`` examples where given) and its likelihood scores under the run, with
    every key of :data:`OPTIONAL_KEYS` present; ``unit``: what an example is called in the error."""
    check_vocabularies(run, data, "evaluate on")
    split = data.split(split_name)
    if limit is not None:
        if limit < 1:
            raise UserError(f"limit {limit}: score at least 1 {unit}")
        split = split.first(limit)
    config = run.config
    results = {"split": split_name, "checkpoint": str(run.checkpoint), "mode": config.model.mode}
    if limit is not None:
        results["limit"] = len(split)
    results.update(score_split(run.model, split, run.device, max_tokens=config.data.eval_max_tokens, kmax=kmax,
                               samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16,
                               progress=True))
    for key in OPTIONAL_KEYS:
        results.setdefault(key, None)
    return split, results


def batch_loss(model: torch.nn.Module, batch, generator: torch.Generator, config: ModelConfig,
               warmup: bool = False) -> tuple[torch.Tensor, dict]:
    """The mean surrogate loss over the batch's real target tokens, and reportable sums; ``model`` may
    be wrapped (DistributedDataParallel)."""
    out = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
    return latent.batch_objective(latent.get_mode(config.mode), out, samples=config.samples,
                                  temperature=config.temperature, generator=generator, warmup=warmup)


class TranslationTask(Task):
    name = "translation"
    aligns_sequences = True

    def plausible(self, data: PreparedData, metric: str, value: float) -> bool:
        """A perplexity within 1000 times that of a uniform guess over the target vocabulary."""
        return not metric.endswith("ppl") or value <= 1000.0 * len(data.tgt_vocab)

    def largest_batch(self, data: PreparedData, split, batcher) -> tuple[int, str, str]:
        """The output distribution and its gradient, ``[B, T + 1, V]`` in float32, of the largest batch."""
        lengths = split.tgt_lengths
        largest = max((len(rows) * (int(lengths[rows].max()) + 1) for rows in batcher.batches(1) if len(rows)),
                      default=0)
        return (largest * len(data.tgt_vocab) * memory.FLOAT_BYTES * 2,
                f"a training batch of {largest:,} padded target tokens over {len(data.tgt_vocab):,} target words "
                "(the output distribution and its gradient)",
                "lower data.max_tokens or data.max_sentences, or prepare with a smaller --max-len")

    def load(self, data_dir, reverse: bool = False) -> PreparedData:
        return load_prepared(data_dir, reverse=reverse)

    def build_model(self, config: Config, data: PreparedData) -> torch.nn.Module:
        try:
            return build_translation_model(config, len(data.src_vocab), len(data.tgt_vocab))
        except ValueError as error:
            raise UserError(f"model.arch={config.model.arch!r}: {error}") from None

    def batcher(self, split, config: Config, *, shuffle: bool, seed: int) -> TokenBatcher:
        return TokenBatcher(split.src_lengths, split.tgt_lengths, config.data.max_tokens,
                            max_sentences=config.data.max_sentences or None, shuffle=shuffle, seed=seed)

    def collate(self, split, indices):
        return collate(split, indices)

    def loss(self, model, batch, generator, config: Config, warmup: bool):
        return batch_loss(model, batch, generator, config.model, warmup)

    def score(self, model, split, device, config: Config) -> dict:
        return score_split(model, split, device, max_tokens=config.data.eval_max_tokens,
                           samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16)

    def validation_metric(self, mode: str) -> str:
        return validation_metric(mode)

    def evaluate(self, run, data: PreparedData, split: str, *, kmax: tuple[int, ...] = (1, 2, 3, 5),
                 bleu: bool = True, decode: DecodeConfig | None = None, limit: int | None = None,
                 alignment_scores: Callable[..., dict] | None = None, decoder: torch.nn.Module | None = None,
                 **_) -> dict:
        """Every metric of `varattn evaluate` for one split (see :mod:`varattn.tasks.translation_scores`
        for the scores), then the AER of ``alignment_scores`` (see :meth:`Task.evaluate`), then BLEU.

        ``kmax_ppl`` (latent modes with enumeration), ``elbo_ppl`` and ``kl`` (models with q) are None where
        they do not apply. With ``bleu``, the split is decoded by beam search with ``decode`` (default: the
        run's ``decode`` settings): ``bleu`` scores the BPE-removed output against the tokenised reference
        with ``tokenize="none"`` (multi-bleu.perl's convention); ``sacrebleu`` the detokenised output against
        the raw reference (or the detokenised reference) with 13a, lowercased when the data pipeline
        lowercases.

        ``decoder``: the model that decodes (e.g. an ensemble with the run's model in it,
        :mod:`varattn.decoding.ensemble`); the scores are always the run's own model's.

        ``limit``: score only the first ``limit`` pairs of the split. When SIGINT or SIGTERM asks to stop
        (:mod:`varattn.stopping`), the results hold what was complete and ``partial`` says what is missing.
        """
        split, results = split_scores(run, data, split, kmax, limit, "sentence")
        config = run.config
        signum = stopping.requested()
        if signum:
            results["partial"] = (f"stopped by {stopping.name(signum)} after scoring {results['sentences']} of "
                                  f"{len(split)} sentences (shortest first): the scores cover those only; no AER, "
                                  "no BLEU")
            return results
        aer_scores = alignment_scores(run, data, results["split"], limit=len(split)) if alignment_scores else {}
        signum = stopping.requested()
        if signum:
            results["partial"] = f"stopped by {stopping.name(signum)} while aligning: scores complete; no AER, no BLEU"
            return results
        results.update(aer_scores)
        if bleu:
            results.update(self._bleu(run, split, decode or config.decode, decoder or run.model))
        return results

    @staticmethod
    def _bleu(run, split, decode: DecodeConfig, decoder: torch.nn.Module) -> dict:
        """``bleu``, ``sacrebleu``, their signatures and the decoding settings of the decoded ``split``
        (or ``partial`` when a signal stopped the decoding)."""
        found = decode_ids(SimpleNamespace(model=decoder, device=run.device, data=run.data),
                           [split.src(i).tolist() for i in range(len(split))], decode, progress=True)
        signum = stopping.requested()
        if signum:
            return {"partial": f"stopped by {stopping.name(signum)} while decoding ({len(found)} of {len(split)} "
                               "sentences decoded): scores and AER complete; no BLEU"}
        pipeline = run.data.pipeline
        hypotheses = [pipeline.decode_target(run.data.tgt_vocab.decode(h.tokens)) for h in found]
        references = split.references()
        # force: scoring tokenised text is deliberate here (multi-bleu's convention), so no "detokenize" warnings
        tokenised = sacrebleu.metrics.BLEU(tokenize="none", force=True)
        out = {"bleu": tokenised.corpus_score(hypotheses, [references]).score,
               "bleu_signature": str(tokenised.get_signature())}
        raw = split.raw_references()
        detok = [pipeline.decode_target(h.split(), detokenize=True) for h in hypotheses]
        if raw is None:
            raw = [pipeline.decode_target(r.split(), detokenize=True) for r in references]
        # force: this is the pipeline's own detokenisation (none for a corpus that was never tokenised)
        sacre = sacrebleu.metrics.BLEU(tokenize="13a", lowercase=pipeline.lowercase, force=True)
        out.update(sacrebleu=sacre.corpus_score(detok, [raw]).score, sacrebleu_signature=str(sacre.get_signature()),
                   decoding=dataclasses.asdict(decode))
        return out

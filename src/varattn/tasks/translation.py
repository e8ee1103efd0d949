"""Translation as a :class:`varattn.tasks.Task`: prepared parallel text, the Seq2Seq model, token losses."""

from __future__ import annotations

from pathlib import Path

import torch

from varattn import latent
from varattn.config import Config
from varattn.data.text.batching import TokenBatcher, collate
from varattn.data.text.prepared import PreparedData, load_prepared
from varattn.tasks.translation_scores import score_split, validation_metric
from varattn.models.seq2seq import Seq2Seq


def batch_loss(model: torch.nn.Module, batch, generator: torch.Generator, warmup: bool = False
               ) -> tuple[torch.Tensor, dict]:
    """The mean surrogate loss over the batch's real target tokens, and reportable sums.

    ``model`` may be wrapped (DistributedDataParallel); its config is the wrapped module's.
    """
    cfg = getattr(model, "module", model).config
    fwd = model(batch.src, batch.src_lengths, batch.tgt_in, batch.tgt_out, batch.tgt_lengths)
    terms = latent.objective(cfg.mode, fwd.likelihood, fwd.prior, fwd.posterior, fwd.mask,
                             samples=cfg.samples, temperature=cfg.temperature, generator=generator,
                             **({"warmup": True} if warmup else {}))
    keep = fwd.tgt_mask
    tokens = int(keep.sum())
    loss = terms.loss.masked_fill(~keep, 0.0).sum() / max(tokens, 1)
    stats = {"tokens": tokens, "nll": float(terms.nll.masked_fill(~keep, 0.0).sum()),
             "kl": float(terms.kl.masked_fill(~keep, 0.0).sum())}
    return loss, stats


class TranslationTask:
    name = "translation"

    def load(self, data_dir) -> PreparedData:
        return load_prepared(data_dir)

    def split(self, data: PreparedData, name: str):
        return data.split(name)

    def copy_essentials(self, data: PreparedData, dst: Path) -> None:
        data.copy_essentials(dst)

    def build_model(self, config: Config, data: PreparedData) -> Seq2Seq:
        return Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab))

    def batcher(self, split, config: Config, *, shuffle: bool, seed: int) -> TokenBatcher:
        return TokenBatcher(split.src_lengths, split.tgt_lengths, config.data.max_tokens,
                            max_sentences=config.data.max_sentences or None, shuffle=shuffle, seed=seed)

    def collate(self, split, indices):
        return collate(split, indices)

    def loss(self, model, batch, generator, warmup):
        return batch_loss(model, batch, generator, warmup)

    def score(self, model, split, device, config: Config) -> dict:
        return score_split(model, split, device, max_tokens=config.data.eval_max_tokens,
                           samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16)

    def validation_metric(self, mode: str) -> str:
        return validation_metric(mode)

    def evaluate(self, run, data, split: str, **options) -> dict:
        from varattn.analysis.evaluation import evaluate_run

        return evaluate_run(run, data, split, **options)

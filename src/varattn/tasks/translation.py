"""Translation as a :class:`varattn.tasks.Task`: prepared parallel text, the Seq2Seq model, token losses."""

from __future__ import annotations


import torch

from varattn import latent, memory
from varattn.config import Config, ModelConfig
from varattn.data.text.batching import TokenBatcher, collate
from varattn.data.text.prepared import PreparedData, load_prepared
from varattn.tasks.translation_scores import score_split, validation_metric
from varattn.errors import UserError
from varattn.models.registry import build_translation_model
from varattn.tasks.base import Task


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

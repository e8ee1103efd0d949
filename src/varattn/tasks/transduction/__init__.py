"""Character-to-symbol transduction (grapheme-to-phoneme conversion) as a :class:`varattn.tasks.Task`.

The data are lexicons (:mod:`.data`: characters in, space-separated symbols out), the model is the
translation model of ``model.arch`` (``rnn`` or ``transformer``) in any latent mode, trained by the
translation loss; decoding is the same beam search. Validation adds to the translation scores (exact
PPL, prior entropy, KL; :mod:`varattn.tasks.translation_scores`) the greedy ``wer`` and ``per`` of the
split (:mod:`.metrics`); the checkpoint is chosen as for translation, by the mode's perplexity.
"""

from __future__ import annotations

import dataclasses

from varattn.config import Config, DecodeConfig
from varattn.tasks.translation import TranslationTask, split_scores
from varattn.tasks.translation_scores import score_split
from varattn.data.lexicon import load_transduction

__all__ = ["TransductionTask"]


class TransductionTask(TranslationTask):
    name = "transduction"

    def load(self, data_dir, reverse: bool = False):
        return load_transduction(data_dir, reverse=reverse)

    def score(self, model, split, device, config: Config) -> dict:
        from varattn.tasks.transduction.decoding import decode_split

        scores = score_split(model, split, device, max_tokens=config.data.eval_max_tokens,
                             samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16)
        greedy = dataclasses.replace(config.decode, beam=1)
        found = decode_split(model, device, split, greedy)
        scores.update(wer=found["wer"], per=found["per"])
        return scores

    def evaluate(self, run, data, split: str, *, kmax: tuple[int, ...] = (1, 2, 3, 5), bleu: bool = True,
                 decode: DecodeConfig | None = None, limit: int | None = None, decoder=None, **_) -> dict:
        """Every score of `varattn evaluate` on ``split`` of a transduction folder (its first ``limit``
        words where given); ``bleu`` (the flag `--no-bleu` turns off) decodes and adds ``wer``, ``per``,
        ``words`` and the decoding settings. ``decoder``: the model that decodes (default the run's; e.g.
        an ensemble, :mod:`varattn.decoding.ensemble`); the likelihood scores are the run's model's."""
        from varattn.tasks.transduction.decoding import decode_split

        split, results = split_scores(run, data, split, kmax, limit, "word")
        config = run.config
        if bleu:
            decode = decode or config.decode
            found = decode_split(decoder or run.model, run.device, split, decode)
            results.update(wer=found["wer"], per=found["per"], words=len(split), decoding=dataclasses.asdict(decode))
        return results

"""`varattn evaluate`: scores, decoding and BLEU of a run on a prepared split, as a dict and a table."""

from __future__ import annotations

import sacrebleu

from .data.prepared import PreparedData
from .errors import UserError
from .evaluate import score_split
from .runs import LoadedRun
from .translate import decode_ids


def corpus_bleu(hypotheses: list[str], references: list[str], tokenize: str) -> sacrebleu.metrics.BLEUScore:
    return sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize)


def evaluate_run(run: LoadedRun, data: PreparedData, split_name: str, *, kmax: tuple[int, ...] = (1, 2, 3, 5),
                 bleu: bool = True) -> dict:
    """Every metric of `varattn evaluate` for one split (see :mod:`varattn.evaluate` for the scores)."""
    if data.src_vocab != run.data.src_vocab or data.tgt_vocab != run.data.tgt_vocab:
        raise UserError(f"{data.dir}: its vocabularies differ from the run's ({run.checkpoint.parent}/data) — "
                        "evaluate on data prepared together with the training data")
    split = data.split(split_name)
    config = run.config
    results = {"split": split_name, "checkpoint": str(run.checkpoint), "mode": config.model.mode}
    results.update(score_split(run.model, split, run.device, max_tokens=config.data.eval_max_tokens, kmax=kmax,
                               samples=config.train.eval_samples, seed=config.train.seed, bf16=config.train.bf16,
                               progress=True))
    if bleu:
        decode = config.decode
        found = decode_ids(run, [split.src(i).tolist() for i in range(len(split))], decode, progress=True)
        pipeline = run.data.pipeline
        hypotheses = [pipeline.decode_target(run.data.tgt_vocab.decode(h.tokens)) for h in found]
        references = split.references()
        results["bleu"] = corpus_bleu(hypotheses, references, "none").score
        raw = split.raw_references()
        detok = [pipeline.decode_target(h.split(), detokenize=True) for h in hypotheses]
        if raw is None:
            raw = [pipeline.decode_target(r.split(), detokenize=True) for r in references]
        sacre = sacrebleu.metrics.BLEU(tokenize="13a", lowercase=pipeline.lowercase)
        score = sacre.corpus_score(detok, [raw])
        results["sacrebleu"] = score.score
        results["sacrebleu_signature"] = str(sacre.get_signature())
        results["decoding"] = {"beam": decode.beam, "alpha": decode.alpha, "eos_norm": decode.eos_norm,
                               "kmax": decode.kmax, "max_len_a": decode.max_len_a, "max_len_b": decode.max_len_b}
    return results


def format_table(results: dict) -> str:
    """A readable two-column table of the scalar results (and K-max perplexities)."""
    rows = []
    for key, value in results.items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                rows.append((f"{key}[{sub}]", inner))
        else:
            rows.append((key, value))
    width = max(len(k) for k, _ in rows)
    lines = []
    for key, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)

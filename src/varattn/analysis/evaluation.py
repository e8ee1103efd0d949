"""`varattn evaluate`: scores, decoding and BLEU of a run on a prepared split, as a dict and a table."""

from __future__ import annotations

import dataclasses

import sacrebleu

from varattn import stopping
from varattn.config import DecodeConfig
from varattn.data.text.prepared import PreparedData
from varattn.errors import UserError
from varattn.tasks.translation_scores import score_split
from varattn.tasks import task_for
from varattn.tasks.vqa import score_vqa
from varattn.training.runs import LoadedRun, check_vocabularies
from varattn.decoding.translate import decode_ids
from varattn.tasks.transduction.decoding import decode_split


# Keys that only some models have; `varattn evaluate` lists them as null ("n/a") for the others.
OPTIONAL_KEYS = ("kmax_ppl", "elbo_ppl", "kl")


def evaluate_run(run: LoadedRun, data: PreparedData, split_name: str, *, kmax: tuple[int, ...] = (1, 2, 3, 5),
                 bleu: bool = True, decode: DecodeConfig | None = None, limit: int | None = None) -> dict:
    """Every metric of `varattn evaluate` for one split (see :mod:`varattn.tasks.translation_scores` for the scores).

    ``kmax_ppl`` (latent modes with enumeration), ``elbo_ppl`` and ``kl`` (models with q) are None where
    they do not apply. With ``bleu``, the split is decoded by beam search with ``decode`` (default: the
    run's ``decode`` settings): ``bleu`` scores the BPE-removed output against the tokenised reference
    with ``tokenize="none"`` (multi-bleu.perl's convention); ``sacrebleu`` the detokenised output against
    the raw reference (or the detokenised reference) with 13a, lowercased when the data pipeline
    lowercases.

    ``limit``: score only the first ``limit`` pairs of the split. When SIGINT or SIGTERM asks to stop
    (:mod:`varattn.stopping`), the results hold what was complete and ``partial`` says what is missing.
    """
    check_vocabularies(run, data, "evaluate on")
    split = data.split(split_name)
    if limit is not None:
        if limit < 1:
            raise UserError(f"limit {limit}: score at least 1 sentence")
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
    signum = stopping.requested()
    if signum:
        results["partial"] = (f"stopped by {stopping.name(signum)} after scoring {results['sentences']} of "
                              f"{len(split)} sentences (shortest first): the scores cover those only; no AER, no BLEU")
        return results
    from varattn.analysis.align import split_aer  # aer / align_precision / align_recall when the split has gold links

    aer_scores = split_aer(run, data, split_name, limit=len(split))
    signum = stopping.requested()
    if signum:
        results["partial"] = f"stopped by {stopping.name(signum)} while aligning: scores complete; no AER, no BLEU"
        return results
    results.update(aer_scores)
    if bleu:
        decode = decode or config.decode
        found = decode_ids(run, [split.src(i).tolist() for i in range(len(split))], decode, progress=True)
        signum = stopping.requested()
        if signum:
            results["partial"] = (f"stopped by {stopping.name(signum)} while decoding ({len(found)} of {len(split)} "
                                  "sentences decoded): scores and AER complete; no BLEU")
            return results
        pipeline = run.data.pipeline
        hypotheses = [pipeline.decode_target(run.data.tgt_vocab.decode(h.tokens)) for h in found]
        references = split.references()
        # force: scoring tokenised text is deliberate here (multi-bleu's convention), so no "detokenize" warnings
        tokenised = sacrebleu.metrics.BLEU(tokenize="none", force=True)
        results["bleu"] = tokenised.corpus_score(hypotheses, [references]).score
        results["bleu_signature"] = str(tokenised.get_signature())
        raw = split.raw_references()
        detok = [pipeline.decode_target(h.split(), detokenize=True) for h in hypotheses]
        if raw is None:
            raw = [pipeline.decode_target(r.split(), detokenize=True) for r in references]
        # force: this is the pipeline's own detokenisation (none for a corpus that was never tokenised)
        sacre = sacrebleu.metrics.BLEU(tokenize="13a", lowercase=pipeline.lowercase, force=True)
        score = sacre.corpus_score(detok, [raw])
        results["sacrebleu"] = score.score
        results["sacrebleu_signature"] = str(sacre.get_signature())
        results["decoding"] = dataclasses.asdict(decode)
    return results


def evaluate_vqa(run: LoadedRun, data, split: str, **options) -> dict:
    """Scores of a loaded VQA run on ``split`` of ``data`` (see :mod:`varattn.tasks.vqa`); translation
    options (kmax, bleu, decode) are ignored."""
    mine = run.data
    if data.answers != mine.answers or data.question_vocab != mine.question_vocab:
        raise UserError(f"{data.path}: its answer or question vocabulary differs from the run's "
                        f"({run.checkpoint.parent}/data) — evaluate on data prepared together with the "
                        "training data")
    if data.feature_dim != mine.feature_dim:
        raise UserError(f"{data.path}: region features are {data.feature_dim} wide but the run was trained "
                        f"on {mine.feature_dim} — use features of the same extractor")
    config = run.config
    results = {"split": split, "checkpoint": str(run.checkpoint), "mode": config.model.mode}
    results.update(score_vqa(run.model, data.split(split), run.device, batch_size=config.vqa.batch_size,
                             bf16=config.train.bf16, progress=True))
    return results


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


#: task name -> what `varattn evaluate` reports for a run of that task
EVALUATORS = {"translation": evaluate_run, "vqa": evaluate_vqa, "transduction": evaluate_transduction}


def evaluate(run: LoadedRun, data_dir, split: str, **options) -> dict:
    """Every metric of ``varattn evaluate`` for a loaded run on ``split`` of the prepared folder
    ``data_dir``, by the run's task."""
    task = task_for(data_dir)
    if task.name != run.task.name:
        raise UserError(f"{data_dir}: {task.name} data, but {run.checkpoint.parent} is a {run.task.name} model — "
                        "evaluate on data of the run's task")
    data = task.load(data_dir, reverse=run.config.data.reverse)
    return EVALUATORS[task.name](run, data, split, **options)


# What each score of `varattn evaluate` measures, and which way is better (printed under its table).
LEGEND = (
    ("ppl", "perplexity of the references, exp(mean -log p(y_t)), exact marginal over z under the prior "
            "(soft: expected context); lower is better"),
    ("entropy", "entropy of the prior over source positions, nats per token; lower = sharper alignments"),
    ("kmax_ppl[K]", "ppl when each token sums over only the K most probable positions"),
    ("elbo_ppl", "ppl from the variational bound with q (vae-* only); an upper bound on ppl"),
    ("kl", "KL(q || prior) per token (vae-* only); near 0 means q collapsed onto the prior"),
    ("aer", "alignment error rate of argmax links against the gold links, word level; lower is better"),
    ("bleu", "BPE-removed output against the tokenised reference (tokenize none), 0-100; higher is better"),
    ("sacrebleu", "detokenised output against the raw reference (13a), 0-100; higher is better"),
)


def legend(results: dict) -> str:
    """The lines of :data:`LEGEND` for the scores present in ``results``."""
    present = {key.split("[")[0] for key in results} | {"aer" for key in results if key.startswith("align_")}
    rows = [(key, meaning) for key, meaning in LEGEND if key.split("[")[0] in present]
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"  {key.ljust(width)}  {meaning}" for key, meaning in rows)


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
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)

"""`varattn evaluate`: a run's scores on a prepared split, as a dict and a table.

What is scored is the run's task's: :meth:`varattn.tasks.Task.evaluate` (translation: scores, AER and
BLEU; transduction: scores, WER and PER; VQA: likelihood and accuracy; a task without its own: its
validation scores). This module opens the folder, checks it is of the run's task, lends the task the
alignment scores it cannot compute below this layer, and formats the results.
"""

from __future__ import annotations

from varattn.analysis.align import split_aer
from varattn.errors import UserError
from varattn.tasks import task_for
from varattn.training.runs import LoadedRun


def evaluate_run(run: LoadedRun, data, split: str, **options) -> dict:
    """Every metric of ``varattn evaluate`` for a loaded run on ``split`` of ``data`` (a folder of the
    run's task, loaded): the task's :meth:`~varattn.tasks.Task.evaluate` with ``options`` (``kmax``,
    ``bleu``, ``decode``, ``limit``) and the alignment scores of :func:`varattn.analysis.align.split_aer`."""
    return run.task.evaluate(run, data, split, alignment_scores=split_aer, **options)


def evaluate(run: LoadedRun, data_dir, split: str, **options) -> dict:
    """Every metric of ``varattn evaluate`` for a loaded run on ``split`` of the prepared folder
    ``data_dir``, by the run's task."""
    task = task_for(data_dir)
    if task.name != run.task.name:
        raise UserError(f"{data_dir}: {task.name} data, but {run.checkpoint.parent} is a {run.task.name} model — "
                        "evaluate on data of the run's task")
    return evaluate_run(run, task.load(data_dir, reverse=run.config.data.reverse), split, **options)


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

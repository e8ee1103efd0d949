"""Visual question answering as a :class:`varattn.tasks.Task`: prepared VQA folders, the VQA model,
one sampled answer per question in training, and the scores of ``varattn evaluate``.

Training: each question's target is one annotator's answer, drawn uniformly among the annotators whose
answer is in the vocabulary — i.e. an answer with probability proportional to how many gave it — from
the trainer's generator; the loss is the mean over questions of the mode's surrogate.

Scores of a split (every number a mean over its questions; see :func:`score_vqa`):

- ``nll``: the expected negative log-likelihood of the annotators' answers,
  ``-Σ_y (c_y / Σc) log p(y | x)`` with ``c_y`` the annotators who gave y (answers in the vocabulary),
  under the prior: the exact marginal ``Σ_i p(i) p(y | i)`` for latent modes, the expected context for
  ``soft``. Questions none of whose answers is in the vocabulary have no nll (``nll_questions`` counts
  the rest). The validation metric of ``soft``, ``marginal`` and ``hard-*``.
- ``elbo`` (``vae-*``): the same expectation of ``E_q[-log p(y | z)] + KL(q(z | x, y) ‖ p(z | x))``, by
  enumeration (also for ``vae-sample``): an upper bound on ``nll``, and the validation metric of
  ``vae-*``, as the paper selects variational models; ``kl`` is its KL part.
- ``accuracy``: VQA accuracy of the prior's most probable answer, ``min(#annotators who gave it / 3, 1)``;
  ``accuracy_vqa_eval``: the official evaluation's version, that formula averaged over the ten subsets
  of nine annotators (0, 0.3, 0.6, 0.9, 1 for 0, 1, 2, 3, ≥4 of ten).
- ``entropy``: the prior's entropy over the valid regions, in nats.
- ``region_accuracy`` (splits with gold regions, e.g. the synthetic corpus): how often the prior's argmax
  is the region the answer depends on, with ``chance_region_accuracy`` = mean of 1 / #regions;
  ``posterior_region_accuracy`` the same for q given the most frequent answer (``vae-*``).
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from varattn import latent
from varattn.device import autocast as device_autocast
from varattn.config import Config, ModelConfig
from varattn.data.vqa.prepared import QuestionBatcher, VQABatch, VQAData, VQASplit, collate_vqa, load_vqa
from varattn.errors import UserError
from varattn.models.vqa import VQAModel, build_vqa_model
from varattn.tasks.base import Task


def vqa_accuracy(matches: torch.Tensor) -> torch.Tensor:
    """VQA accuracy ``min(m / 3, 1)`` from ``matches`` [...] (annotators who gave the predicted answer)."""
    return (matches.to(torch.float64) / 3.0).clamp(max=1.0)


def vqa_accuracy_leave_one_out(matches: torch.Tensor, annotators: torch.Tensor | int = 10) -> torch.Tensor:
    """The official VQA evaluation: ``min(m / 3, 1)`` averaged over the subsets of ``n - 1`` of the ``n``
    annotators; leaving out one of the ``m`` who gave the answer leaves ``m - 1``."""
    m = matches.to(torch.float64)
    n = torch.as_tensor(annotators, dtype=torch.float64, device=m.device).clamp_min(1.0)
    return (m / n) * ((m - 1).clamp_min(0) / 3).clamp(max=1.0) + (1 - m / n) * (m / 3).clamp(max=1.0)


def sample_answers(answers: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One answer per question [B, 1], drawn ∝ how many annotators gave it, from ``answers`` [B, 10]
    (negative = outside the vocabulary or no annotator); and the bool [B] of questions that have an answer in the vocabulary."""
    valid = answers >= 0
    keep = valid.any(1)
    weights = valid.float() + (~keep)[:, None].float()          # rows without an answer: any slot, masked out
    slot = torch.multinomial(weights, 1, generator=generator)   # [B, 1]
    return answers.gather(1, slot).clamp_min(0), keep


def batch_loss(model: torch.nn.Module, batch: VQABatch, generator: torch.Generator, config: ModelConfig,
               warmup: bool = False) -> tuple[torch.Tensor, dict]:
    """The mean surrogate loss over the batch's questions (one sampled answer each) and reportable sums;
    ``model`` is a :class:`VQAModel` or its DistributedDataParallel wrapper."""
    answers, keep = sample_answers(batch.answers, generator)
    out = model(batch.questions, batch.lengths, batch.features, batch.regions, answers)
    out.query_weights = keep[:, None]
    return latent.batch_objective(latent.get_mode(config.mode), out, samples=config.samples,
                                  temperature=config.temperature, generator=generator, warmup=warmup)


def _batch_sums(model: VQAModel, batch: VQABatch, gold: bool) -> dict[str, float]:
    enc = model.encode(batch.questions, batch.lengths, batch.features, batch.regions)
    answers, mask = batch.answers, enc.mask
    valid = answers >= 0
    counts = torch.zeros(len(batch), model.num_answers, device=answers.device)
    counts.scatter_add_(1, answers.clamp_min(0), valid.float())                # [B, A]
    total = counts.sum(1)
    has = total > 0
    share = counts / total.clamp_min(1)[:, None]
    log_p = model.answer_log_probs(enc).float()                                 # [B, A]
    nll = -(share * log_p).sum(1)
    predicted = log_p.argmax(1)
    matches = (answers == predicted[:, None]).sum(1)
    sums = {"nll": nll[has].double().sum(), "nll_questions": has.sum(), "questions": len(batch),
            "accuracy": vqa_accuracy(matches).sum(),
            "accuracy_vqa_eval": vqa_accuracy_leave_one_out(matches, (answers != -2).sum(1)).sum(),
            "entropy": latent.entropy(enc.prior, mask).double().sum()}
    region = enc.prior.float().masked_fill(~mask, float("-inf")).argmax(1)
    if gold:
        sums["region_correct"] = (region == batch.gold_region).sum()
        sums["chance"] = (1.0 / batch.regions.double()).sum()
    if model.has_posterior:
        m = int((counts > 0).sum(1).max().clamp_min(1))
        votes, ids = counts.topk(m, dim=1)                                      # distinct answers [B, M]
        weights = votes / total.clamp_min(1)[:, None]
        out = model.latent_output(enc, ids, weights)
        terms = latent.evaluation_sums(model.mode, out)
        sums["elbo"], sums["kl"] = terms["elbo"], terms["kl"]
        if gold:
            q_region = out.posterior[:, 0].float().masked_fill(~mask, float("-inf")).argmax(1)
            sums["posterior_region_correct"] = (q_region == batch.gold_region).sum()
    return {k: float(v) for k, v in sums.items()}


@torch.no_grad()
def score_vqa(model: VQAModel, split: VQASplit, device: torch.device, *, batch_size: int = 512,
              bf16: bool = True, progress: bool = False) -> dict:
    """Scores of ``model`` on ``split`` (see the module docstring for the keys)."""
    was_training = model.training
    model.eval()
    gold = split.has_gold_regions
    totals: dict[str, float] = defaultdict(float)
    batches = QuestionBatcher(len(split), batch_size, shuffle=False).batches()
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="scoring", unit="batch", leave=False)
    autocast = device_autocast(device, bf16)
    for indices in batches:
        with autocast:
            for key, value in _batch_sums(model, collate_vqa(split, indices).to(device), gold).items():
                totals[key] += value
    model.train(was_training)
    n, n_nll = max(totals["questions"], 1.0), max(totals["nll_questions"], 1.0)
    result = {"nll": totals["nll"] / n_nll if totals["nll_questions"] else math.nan,
              "accuracy": totals["accuracy"] / n, "accuracy_vqa_eval": totals["accuracy_vqa_eval"] / n,
              "entropy": totals["entropy"] / n,
              "region_accuracy": totals["region_correct"] / n if gold else None,
              "chance_region_accuracy": totals["chance"] / n if gold else None,
              "elbo": totals["elbo"] / n_nll if model.has_posterior else None,
              "kl": totals["kl"] / n_nll if model.has_posterior else None,
              "posterior_region_accuracy": totals["posterior_region_correct"] / n
              if model.has_posterior and gold else None,
              "questions": int(totals["questions"]), "nll_questions": int(totals["nll_questions"])}
    return result


def validation_metric(mode: str) -> str:
    """``elbo`` or ``nll``, as the mode's record says."""
    return latent.get_mode(mode).validation


class VQATask(Task):
    name = "vqa"

    def plausible(self, data: VQAData, metric: str, value: float) -> bool:
        """A negative log-likelihood (or ELBO) within log(1000 ×) that of a uniform guess over the answers."""
        return metric not in ("nll", "elbo") or value <= math.log(1000.0 * len(data.answers))

    def load(self, data_dir, reverse: bool = False) -> VQAData:
        if reverse:
            raise UserError(f"{data_dir}: data.reverse swaps source and target of translation data; "
                            "VQA data has no reverse direction — remove data.reverse")
        return load_vqa(data_dir)

    def build_model(self, config: Config, data: VQAData) -> VQAModel:
        return build_vqa_model(config, data)

    def batcher(self, split: VQASplit, config: Config, *, shuffle: bool, seed: int) -> QuestionBatcher:
        return QuestionBatcher(len(split), config.vqa.batch_size, shuffle=shuffle, seed=seed)

    def collate(self, split: VQASplit, indices) -> VQABatch:
        return collate_vqa(split, indices)

    def loss(self, model, batch, generator, config: Config, warmup: bool):
        return batch_loss(model, batch, generator, config.model, warmup)

    def score(self, model, split, device, config: Config) -> dict:
        return score_vqa(model, split, device, batch_size=config.vqa.batch_size, bf16=config.train.bf16)

    def validation_metric(self, mode: str) -> str:
        return validation_metric(mode)

    def evaluate(self, run, data: VQAData, split: str, *, limit: int | None = None, **_) -> dict:
        """Scores of a loaded VQA run on the whole ``split`` of ``data`` (see the module docstring);
        translation options (kmax, bleu, decode) are ignored."""
        if limit is not None:
            raise UserError(f"limit={limit}: a VQA split is scored whole — leave the limit out")
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

"""Tasks: what the one trainer needs to know about a kind of data and model.

A prepared data folder names its task in ``meta.json`` (``"task"``; translation when absent). The
trainer, checkpoints, ``varattn evaluate`` and run loading go through this interface, so a new task
(visual question answering, say) brings its data, model, loss and scores and reuses everything else.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from varattn.config import Config, register_section
from varattn.errors import UserError


class Task:
    """What differs between tasks; a task subclasses this and registers in :data:`TASKS`. The data object
    it loads has ``split(name)`` (a split with ``__len__``) and ``copy_essentials(dst)`` (what a run needs
    to be used on its own). The methods without a body are required; the hooks below them have defaults
    (:meth:`evaluate` is what ``varattn evaluate`` reports, so a task brings its evaluation with it)."""

    name: str
    #: whether its models map a source sequence to a target sequence with alignments (align, translate, the API)
    aligns_sequences: bool = False

    def load(self, data_dir: str | Path, reverse: bool = False) -> Any:
        """The prepared data folder (lazy: splits load on demand); ``reverse``: its other direction."""
        raise NotImplementedError

    def build_model(self, config: Config, data: Any) -> nn.Module:
        """A fresh model with ``.config`` (the ModelConfig) for this data."""
        raise NotImplementedError

    def batcher(self, split: Any, config: Config, *, shuffle: bool, seed: int) -> Any:
        """An object whose ``batches(epoch)`` lists the index arrays of one epoch."""
        raise NotImplementedError

    def collate(self, split: Any, indices) -> Any:
        """A batch with ``.to(device)``."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator, config: Config, warmup: bool
             ) -> tuple[torch.Tensor, dict]:
        """The mean surrogate loss of a batch and reportable sums (``tokens``: the count normalised by),
        by :func:`varattn.latent.batch_objective`."""
        raise NotImplementedError

    def score(self, model: nn.Module, split: Any, device: torch.device, config: Config) -> dict:
        """Validation scores; must contain ``validation_metric(mode)``."""
        raise NotImplementedError

    def validation_metric(self, mode: str) -> str:
        """The score (lower is better) that picks the best checkpoint and drives learning-rate decay."""
        raise NotImplementedError

    # -- hooks with defaults --------------------------------------------------------------------------

    def plausible(self, data: Any, metric: str, value: float) -> bool:
        """Whether a finite validation score may become the best checkpoint (not absurd for this data)."""
        return True

    def largest_batch(self, data: Any, split: Any, batcher: Any) -> tuple[int, str, str] | None:
        """The bytes the largest training batch's output needs, what they are and how to lower them (the
        trainer refuses to start when they cannot fit); None when the task does not know."""
        return None

    def evaluate(self, run: Any, data: Any, split: str, **options) -> dict:
        """What ``varattn evaluate`` reports for ``run`` on the split ``split`` of ``data`` (this task's
        loaded folder): the split, the checkpoint, the mode and the task's scores.

        ``run`` is a loaded run (:class:`varattn.training.runs.LoadedRun`: ``model``, ``config``, ``data``
        — the run's own copy of the essentials —, ``checkpoint``, ``device``). ``options`` are what the
        command was asked (``kmax``, ``bleu``, ``decode``, ``limit``, ``decoder``: the model that decodes
        when it is not the run's, e.g. an ensemble) and what the analysis layer lends
        (``alignment_scores(run, data, split, limit=N)``: the split's AER per distribution, ``{}`` without
        gold links); a task reads those it has a use for and ignores the rest. The default: the validation
        scores (:meth:`score`) of the whole split."""
        config = run.config
        return {"split": split, "checkpoint": str(run.checkpoint), "mode": config.model.mode,
                **self.score(run.model, data.split(split), run.device, config)}


#: task name (as written in a prepared folder's meta.json) -> "module:Class" (imported on first use) or the class
TASKS: dict[str, str | type[Task]] = {
    "translation": "varattn.tasks.translation:TranslationTask",
    "vqa": "varattn.tasks.vqa:VQATask",
    "transduction": "varattn.tasks.transduction:TransductionTask",
}


def register_task(name: str, task: str | type[Task], settings: type | None = None) -> None:
    """Make ``task`` (a :class:`Task` subclass, or ``"module:Class"``) the task of folders whose meta.json
    says ``"task": name``, with its own config section ``name`` when ``settings`` (a
    :class:`varattn.config.Section` dataclass) is given — all a new task needs besides its own package."""
    if settings is not None:
        register_section(name, settings, owner=settings.__module__)
    TASKS[name] = task


def task_name(data_dir: str | Path) -> str:
    meta = Path(data_dir) / "meta.json"
    if not meta.is_file():
        raise UserError(f"{meta}: not a prepared data folder (no meta.json) — make one with varattn prepare")
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("task", "translation")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise UserError(f"{meta}: unreadable ({error}) — prepare the data again") from None


def get_task(name: str) -> Task:
    """The task registered as ``name`` in :data:`TASKS`."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r} in meta.json — use data prepared by this version of varattn "
                        f"(tasks: {', '.join(TASKS)})")
    entry = TASKS[name]
    if isinstance(entry, str):
        module, _, cls = entry.partition(":")
        entry = getattr(importlib.import_module(module), cls)
    return entry()


def task_for(data_dir: str | Path) -> Task:
    return get_task(task_name(data_dir))

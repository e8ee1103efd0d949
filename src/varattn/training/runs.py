"""Open a trained run (or one checkpoint of it) for evaluation, translation and alignment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from varattn.training import checkpoint
from varattn import config as config_lib
from varattn.errors import UserError
from varattn.tasks.base import get_task


@dataclass
class LoadedRun:
    """A trained model in eval mode with its config, its task and the run's copy of the data essentials."""

    model: torch.nn.Module
    config: config_lib.Config
    data: object  # the run's copy of the task's essentials (vocabularies, BPE codes, pipeline)
    checkpoint: Path
    device: torch.device
    task: object


def check_vocabularies(run: LoadedRun, data, purpose: str) -> None:
    """UserError unless translation ``data`` has the run's vocabularies (``purpose``: what the data is
    for, e.g. "evaluate on")."""
    if data.src_vocab != run.data.src_vocab or data.tgt_vocab != run.data.tgt_vocab:
        raise UserError(f"{data.path}: its vocabularies differ from the run's ({run.checkpoint.parent}/data) — "
                        f"{purpose} data prepared together with the training data")


def load_run(path: str | Path, device: torch.device, prefer: str = "checkpoint_best") -> LoadedRun:
    """A run directory or checkpoint JSON -> the model in eval mode on ``device``, with its data files."""
    json_path = checkpoint.resolve(path, prefer)
    record = checkpoint.read_meta(json_path)
    config = config_lib.from_saved(record.get("config"), str(json_path)).validate(str(json_path))
    data_dir = json_path.parent / "data"
    if not (data_dir / "meta.json").is_file():
        raise UserError(f"{data_dir}: the run's copy of the vocabularies is missing — copy the whole run "
                        "directory, including data/")
    task = get_task(record.get("task", "translation"))
    try:
        data = task.load(data_dir)
    except UserError as error:
        what = str(error).split(" — ")[0]  # the data's own advice (prepare again) does not fit a run's copy
        raise UserError(f"{what} — this is the run's own copy of the vocabularies: copy the run folder whole "
                        "again, or copy meta.json, vocab.*.json and bpe.codes from the prepared folder it was "
                        "trained on into it") from None
    model = task.build_model(config, data).to(device)
    weights = checkpoint.load_weights(json_path)  # its errors say what is wrong with the checkpoint
    try:
        checkpoint.copy_into(model, weights)
    except UserError as error:
        raise UserError(f"{json_path}: {error} (is {data_dir} the data/ folder written with this run?)") from None
    model.eval()
    return LoadedRun(model, config, data, json_path, device, task)

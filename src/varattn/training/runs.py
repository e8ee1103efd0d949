"""Open a trained model for evaluation, translation, alignment and export: the one loader.

:func:`load_run` takes a run directory (its best checkpoint), one checkpoint's ``.json``, or a folder
written by ``varattn export`` (see :mod:`varattn.export`; its layout is read here, written there), and
gives a :class:`LoadedRun`. ``varattn.load`` (:mod:`varattn.api`) and every command that opens a model
go through it; both layouts end in the same :func:`_assemble` (build the task's model, copy the
weights in, eval mode).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from varattn.training import checkpoint
from varattn import config as config_lib
from varattn.errors import UserError
from varattn.tasks.base import Task, get_task

#: an export folder: its format tag, its weights and its document (config, provenance)
EXPORT_FORMAT = "varattn-export/1"
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_CONFIG = "config.json"


@dataclass
class LoadedRun:
    """A trained model in eval mode with its config, its task and the run's copy of the data essentials.

    ``checkpoint``: the checkpoint's ``.json`` for a run, the ``model.safetensors`` of an export."""

    model: torch.nn.Module
    config: config_lib.Config
    data: object  # the run's copy of the task's essentials (vocabularies, BPE codes, pipeline)
    checkpoint: Path
    device: torch.device
    task: Task

    @property
    def exported(self) -> bool:
        """Whether it was opened from an export folder (no training record, no run directory)."""
        return self.checkpoint.name == EXPORT_WEIGHTS


def is_export(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by ``varattn export`` (it has ``config.json`` and the weights)."""
    path = Path(path)
    return (path / EXPORT_CONFIG).is_file() and (path / EXPORT_WEIGHTS).is_file()


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_run(path: str | os.PathLike, device: torch.device, prefer: str = "checkpoint_best") -> LoadedRun:
    """A run directory (``prefer`` first, then best, then last), a checkpoint JSON or an export folder ->
    the model in eval mode on ``device``, with its data files."""
    if is_export(path):
        return _open_export(Path(path), device)
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
    weights = checkpoint.load_weights(json_path)  # its errors say what is wrong with the checkpoint
    return _assemble(task, config, data, weights, json_path, device,
                     mismatch=lambda error: f"{json_path}: {error} (is {data_dir} the data/ folder written with "
                                            "this run?)")


def _open_export(root: Path, device: torch.device) -> LoadedRun:
    """An export folder: its document checked for format, its weights against their checksum."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path = root / EXPORT_CONFIG
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{config_path}: unreadable ({error}) — export the run again (varattn export)") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise UserError(f"{config_path}: not a varattn export ({EXPORT_FORMAT}) — export the run again "
                        "(varattn export)")
    config = config_lib.from_saved(document.get("config"), str(config_path)).validate(str(config_path))
    weights = root / EXPORT_WEIGHTS
    if document.get("weights_sha256") and sha256(weights) != document["weights_sha256"]:
        raise UserError(f"{weights}: contents do not match the checksum in {EXPORT_CONFIG} (truncated or "
                        "replaced) — download or export it again")
    task = get_task(document.get("task", "translation"))
    data = task.load(root)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise UserError(f"{weights}: unreadable tensors ({error}) — download or export it again") from None
    return _assemble(task, config, data, tensors, weights, device, mismatch=lambda error: f"{weights}: {error}")


def _assemble(task: Task, config: config_lib.Config, data, tensors: dict[str, torch.Tensor], source: Path,
              device: torch.device, mismatch) -> LoadedRun:
    """The task's model for ``config`` and ``data`` on ``device`` with ``tensors`` copied in, in eval
    mode; ``mismatch(error)``: the one line when the tensors do not fit the model."""
    model = task.build_model(config, data).to(device)
    try:
        checkpoint.copy_into(model, tensors)
    except UserError as error:
        raise UserError(mismatch(error)) from None
    model.eval()
    return LoadedRun(model, config, data, source, device, task)

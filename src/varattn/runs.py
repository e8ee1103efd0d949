"""Open a trained run (or one checkpoint of it) for evaluation, translation and alignment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import checkpoint
from . import config as config_lib
from .data.prepared import PreparedData, load_prepared
from .errors import UserError
from .seq2seq import Seq2Seq


@dataclass
class LoadedRun:
    model: Seq2Seq
    config: config_lib.Config
    data: PreparedData  # the run's copy of vocabularies, BPE codes and pipeline
    checkpoint: Path
    device: torch.device


def load_run(path: str | Path, device: torch.device, prefer: str = "checkpoint_best") -> LoadedRun:
    """A run directory or checkpoint JSON -> the model in eval mode on ``device``, with its data files."""
    json_path = checkpoint.resolve(path, prefer)
    record = checkpoint.read_meta(json_path)
    config = config_lib.from_dict(record.get("config"), str(json_path)).validate(str(json_path))
    data_dir = json_path.parent / "data"
    if not (data_dir / "meta.json").is_file():
        raise UserError(f"{data_dir}: the run's copy of the vocabularies is missing — copy the whole run "
                        "directory, including data/")
    data = load_prepared(data_dir)
    vocab = record.get("vocab", {})
    if vocab and (vocab.get("src") != len(data.src_vocab) or vocab.get("tgt") != len(data.tgt_vocab)):
        raise UserError(f"{json_path}: vocabulary sizes {vocab} differ from {data_dir} — the run directory "
                        "is mixed up; use the data/ folder written with this checkpoint")
    model = Seq2Seq(config.model, len(data.src_vocab), len(data.tgt_vocab)).to(device)
    checkpoint.copy_into(model, checkpoint.load_weights(json_path))
    model.eval()
    return LoadedRun(model, config, data, json_path, device)

"""Checkpoints: weights in safetensors, everything else in JSON beside them; no pickles.

A checkpoint ``NAME`` in a run directory is three files:

- ``NAME.safetensors``: the model's parameters (each shared tensor once, under its first name);
- ``NAME.state.safetensors``: optimizer moments and RNG states (training checkpoints only);
- ``NAME.json``: config, trainer state, optimizer hyper-parameters, and the SHA-256 of both tensor
  files. It is written last, so a checkpoint is complete exactly when its JSON exists and the hashes
  match; every file is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from varattn.errors import UserError

FORMAT = 1


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by canonical name (a tensor shared by two modules appears once)."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return {name: t.detach().contiguous() for name, t in tensors.items()}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace_atomically(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def _write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> str:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    _replace_atomically(tmp, path)
    return _sha256(path)


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return {"param_groups": state["param_groups"], "scalars": scalars}, tensors


def _rng_tensors(sampler: torch.Generator | None) -> dict[str, torch.Tensor]:
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    if sampler is not None:
        tensors["rng.sampler"] = sampler.get_state()
    return tensors


def save(run_dir: Path, name: str, model: nn.Module, meta: dict,
         optimizer: torch.optim.Optimizer | None = None, sampler: torch.Generator | None = None,
         rank_rng: list[dict[str, torch.Tensor]] | None = None) -> Path:
    """Write checkpoint ``name`` into ``run_dir``; returns the JSON path. ``meta`` must be JSON-able.

    ``rank_rng``: under data-parallel training, every process's RNG states (``cpu``, ``sampler``,
    ``cuda``), saved as ``rng.rank{r}.{kind}`` so that each process resumes its own streams.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, **meta, "files": {}}
    weights = run_dir / f"{name}.safetensors"
    record["files"]["weights"] = {"name": weights.name, "sha256": _write_tensors(model_tensors(model), weights)}
    if optimizer is not None:
        optim_meta, tensors = _optimizer_split(optimizer)
        tensors.update(_rng_tensors(sampler))
        for rank, states in enumerate(rank_rng or []):
            tensors.update({f"rng.rank{rank}.{kind}": state for kind, state in states.items()})
        state = run_dir / f"{name}.state.safetensors"
        record["optimizer"] = optim_meta
        record["files"]["state"] = {"name": state.name, "sha256": _write_tensors(tensors, state)}
    path = run_dir / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    _replace_atomically(tmp, path)
    return path


def resolve(path: str | Path, prefer: str = "checkpoint_best") -> Path:
    """A run directory or a checkpoint (``.json`` or ``.safetensors``) -> the checkpoint's JSON path."""
    path = Path(path)
    if path.is_dir():
        candidates = [path / f"{prefer}.json", path / "checkpoint_best.json", path / "checkpoint_last.json"]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise UserError(f"{path}: no checkpoint in this run directory — train first (varattn train ...) "
                        "or give a checkpoint's .json file")
    if path.suffix == ".safetensors":
        path = path.with_name(path.name.replace(".state.safetensors", ".safetensors")).with_suffix(".json")
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found — give a run directory or its checkpoint_*.json")
    return path


def read_meta(json_path: Path) -> dict:
    """The JSON record of a checkpoint, checked for format and completeness."""
    try:
        record = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{json_path}: broken checkpoint metadata ({error}) — use another checkpoint "
                        "(checkpoint_best / checkpoint_last) or retrain") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or "files" not in record:
        raise UserError(f"{json_path}: not a varattn checkpoint (format {FORMAT}) — give a checkpoint "
                        "written by varattn train")
    return record


def _load_verified(json_path: Path, entry: dict) -> dict[str, torch.Tensor]:
    path = Path(json_path).parent / entry["name"]
    if not path.is_file():
        raise UserError(f"{path}: missing file of checkpoint {json_path.name} — copy the whole run "
                        "directory, or use another checkpoint")
    if _sha256(path) != entry["sha256"]:
        raise UserError(f"{path}: contents do not match the checksum in {json_path.name} (truncated or "
                        "overwritten) — use another checkpoint or retrain")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path}: unreadable tensors ({error}) — use another checkpoint") from None


def load_weights(json_path: Path) -> dict[str, torch.Tensor]:
    return _load_verified(json_path, read_meta(json_path)["files"]["weights"])


def copy_into(model: nn.Module, tensors: dict[str, torch.Tensor], strict: bool = True
              ) -> tuple[list[str], list[str]]:
    """Copy tensors into the model's parameters by name; returns (missing, unexpected) names.

    With ``strict`` any missing or unexpected name, or a shape mismatch, is an error.
    """
    own = model_tensors(model)
    targets = dict(model.named_parameters())
    targets.update(model.named_buffers())
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [f"{n} {tuple(tensors[n].shape)} vs {tuple(own[n].shape)}"
                  for n in own if n in tensors and tensors[n].shape != own[n].shape]
    if mismatched:
        raise UserError(f"checkpoint shapes differ from the model's: {'; '.join(mismatched[:4])} — "
                        "use the same model sizes as the checkpoint's config")
    if strict and (missing or unexpected):
        raise UserError(f"checkpoint does not fit the model: missing {missing[:4]}, unexpected "
                        f"{unexpected[:4]} — use the config the checkpoint was trained with")
    with torch.no_grad():
        for name, target in targets.items():
            if name in tensors:
                target.copy_(tensors[name].to(target.device, target.dtype))
    return missing, unexpected


def restore_training(json_path: Path, optimizer: torch.optim.Optimizer,
                     sampler: torch.Generator | None, rank: int = 0) -> None:
    """Load optimizer moments and RNG states saved with a training checkpoint (``rank``'s own RNG
    states when the checkpoint was written by a data-parallel run)."""
    record = read_meta(json_path)
    if "state" not in record["files"]:
        raise UserError(f"{json_path}: holds weights only — resume from checkpoint_last of a run")
    tensors = _load_verified(json_path, record["files"]["state"])
    meta = record["optimizer"]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if torch.cuda.is_available():
        names = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
        cuda = [tensors[k] for k in names]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    if sampler is not None and "rng.sampler" in tensors:
        sampler.set_state(tensors["rng.sampler"])
    own = f"rng.rank{rank}."
    if own + "cpu" in tensors:
        torch.set_rng_state(tensors[own + "cpu"])
        if sampler is not None:
            sampler.set_state(tensors[own + "sampler"])
        if own + "cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors[own + "cuda"])

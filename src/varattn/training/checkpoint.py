"""Checkpoints: weights in safetensors, everything else in JSON beside them; no pickles.

A checkpoint ``NAME`` (``checkpoint_best``, ``checkpoint_last``) in a run directory is one unit of files:

- ``NAME.json``: the manifest — config, trainer state, optimizer hyper-parameters, and the name and
  SHA-256 of each tensor file below;
- ``NAME.TAG.safetensors``: the model's parameters (each shared tensor once, under its first name);
- ``NAME.TAG.state.safetensors``: optimizer moments and RNG states (training checkpoints only).

``TAG`` is fresh for every save, so a save never touches the files the current manifest names. A save
writes and fsyncs the tensor files, then the manifest under a temporary name, and makes the new
checkpoint visible with one atomic rename of the manifest; only then are the previous unit's files
removed. A process killed at any point leaves either the old checkpoint or the new one, complete; the
debris of an unfinished save (tensor files no manifest names, ``*.tmp``) is removed by :func:`clean`.
Checkpoints of the earlier layout (``NAME.safetensors`` beside ``NAME.json``) load unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as tensors_to_bytes
from torch import nn

from varattn.errors import UserError

FORMAT = 1


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by canonical name (a tensor shared by two modules appears once)."""
    tensors = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    return {name: t.detach().contiguous() for name, t in tensors.items()}


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (which must not exist), write ``data`` and fsync it."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make renames and removals in ``folder`` durable (where the platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: Path, final: Path) -> None:
    """The one step that makes a new checkpoint visible: an atomic rename of its manifest."""
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return tensors_to_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()})


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
    """Write checkpoint ``name`` into ``run_dir`` as one unit; returns the manifest's path.
    ``meta`` must be JSON-able.

    ``rank_rng``: under data-parallel training, every process's RNG states (``cpu``, ``sampler``,
    ``cuda``), saved as ``rng.rank{r}.{kind}`` so that each process resumes its own streams.

    A failure to write (no space, no permission) removes what this save wrote and raises a one-line
    UserError; the previous checkpoint ``name`` stays as it was.
    """
    run_dir = Path(run_dir)
    tag = secrets.token_hex(4)
    payload = {"weights": (f"{name}.{tag}.safetensors", model_tensors(model))}
    record = {"format": FORMAT, **meta, "files": {}}
    if optimizer is not None:
        optim_meta, tensors = _optimizer_split(optimizer)
        tensors.update(_rng_tensors(sampler))
        for rank, states in enumerate(rank_rng or []):
            tensors.update({f"rng.rank{rank}.{kind}": state for kind, state in states.items()})
        record["optimizer"] = optim_meta
        payload["state"] = (f"{name}.{tag}.state.safetensors", tensors)
    final = run_dir / f"{name}.json"
    tmp = run_dir / f"{name}.json.{tag}.tmp"
    written: list[Path] = []
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for key, (file_name, tensors) in payload.items():
            data = _tensor_bytes(tensors)
            written.append(run_dir / file_name)
            _write_file(run_dir / file_name, data)
            record["files"][key] = {"name": file_name, "sha256": hashlib.sha256(data).hexdigest()}
        written.append(tmp)
        _write_file(tmp, json.dumps(record, indent=1).encode("utf-8"))
        _commit(tmp, final)
    except BaseException as error:
        for path in written:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        if isinstance(error, OSError):
            kept = f"the previous {name} is unchanged" if final.is_file() else f"no {name} was written yet"
            raise UserError(f"{run_dir}: cannot write checkpoint {name} "
                            f"({error.strerror or error}) — {advice(error)}; {kept}") from None
        raise
    clean(run_dir, (name,))
    return final


def advice(error: OSError) -> str:
    """What to do about a failed write, by its cause."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some disk space or write to another disk"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable or choose another output folder"
    return "check the folder and the disk"


NAMES = ("checkpoint_best", "checkpoint_last")
_OWN = re.compile(r"(?P<name>[^.]+)\.(?:[0-9a-f]+\.)?(?:state\.)?safetensors|(?P<tmpname>[^.]+)\.(?:json|safetensors|state\.safetensors)(?:\.[0-9a-f]+)?\.tmp")


def _referenced(manifest: Path) -> set[str] | None:
    """File names a readable manifest names; None when it cannot be read (its files are then kept)."""
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        return {entry["name"] for entry in record["files"].values()}
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def clean(run_dir: str | Path, names: tuple[str, ...] = NAMES) -> list[str]:
    """Remove the debris of unfinished or superseded saves of checkpoints ``names`` in ``run_dir``:
    temporary files, and tensor files that the checkpoint's manifest does not name. Returns the names
    removed. Files beside an unreadable manifest are kept. Removal failures are ignored (a read-only
    run still loads)."""
    run_dir = Path(run_dir)
    removed = []
    try:
        entries = list(run_dir.iterdir())
    except OSError:
        return removed
    keep = {name: _referenced(run_dir / f"{name}.json") for name in names}
    for entry in entries:
        match = _OWN.fullmatch(entry.name)
        if match is None:
            continue
        owner = match.group("name") or match.group("tmpname")
        if owner not in keep or keep[owner] is None:
            continue
        if match.group("tmpname") or entry.name not in keep[owner]:
            try:
                entry.unlink()
                removed.append(entry.name)
            except OSError:
                pass
    return removed


def resolve(path: str | Path, prefer: str = "checkpoint_best") -> Path:
    """A run directory or a checkpoint (``.json`` or one of its ``.safetensors``) -> the checkpoint's
    JSON path. In a run directory ``prefer`` comes first, then best, then last; a manifest that cannot
    be read is passed over when another one can."""
    path = Path(path)
    if path.is_dir():
        candidates = dict.fromkeys([path / f"{prefer}.json", path / "checkpoint_best.json",
                                    path / "checkpoint_last.json"])
        present = [candidate for candidate in candidates if candidate.is_file()]
        for candidate in present:
            if _referenced(candidate) is not None:
                return candidate
        if present:
            return present[0]  # unreadable: read_meta says why
        raise UserError(f"{path}: no checkpoint in this run directory — train first (varattn train ...) "
                        "or give a checkpoint's .json file")
    if path.suffix == ".safetensors":
        path = path.with_name(path.name.split(".", 1)[0] + ".json")
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


def _load_verified(json_path: Path, key: str, record: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of file ``key`` (weights, state) of a checkpoint, checked against its SHA-256.
    When the file has gone because a newer save replaced the checkpoint meanwhile, the new one is read."""
    json_path = Path(json_path)
    for attempt in range(2):
        record = record if record is not None and attempt == 0 else read_meta(json_path)
        if key not in record["files"]:
            raise UserError(f"{json_path}: holds weights only — resume from checkpoint_last of a run")
        entry = record["files"][key]
        path = json_path.parent / entry["name"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if attempt == 0:
                continue
            raise UserError(f"{path}: missing file of checkpoint {json_path.name} — copy the whole run "
                            "directory, or use another checkpoint") from None
        except OSError as error:
            raise UserError(f"{path}: cannot read ({error.strerror}) — check its permissions") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise UserError(f"{path}: contents do not match the checksum in {json_path.name} (truncated or "
                            "overwritten) — use another checkpoint (checkpoint_best / checkpoint_last)")
        try:
            return load_tensors(data)
        except (SafetensorError, OSError) as error:
            raise UserError(f"{path}: unreadable tensors ({error}) — use another checkpoint") from None
    raise AssertionError("unreachable")


def load_weights(json_path: Path) -> dict[str, torch.Tensor]:
    return _load_verified(json_path, "weights")


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
    tensors = _load_verified(json_path, "state", record)
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

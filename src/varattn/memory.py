"""Refuse work whose tensors cannot fit before allocating them.

The figures are lower bounds (float32 weights, gradients and Adam's two moments for a model; the
output distribution and its gradient for a batch), so a refusal is never a false alarm: what is refused
would fail anyway, later and with a traceback.
"""

from __future__ import annotations

import os

import torch

from varattn.errors import UserError

FLOAT_BYTES = 4
TRAINING_COPIES = 4  # weights, gradients, Adam's first and second moments


def available_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``: CUDA's free memory, or the machine's available memory
    (``MemAvailable`` of /proc/meminfo, else free physical pages); None when it cannot be told."""
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(size: float) -> str:
    """Bytes as GiB with two decimals (or as TiB beyond 1024 GiB)."""
    return f"{size / 2**40:,.1f} TiB" if size >= 2**40 else f"{size / 2**30:.2f} GiB"


def check_fits(needed: int, device: torch.device, what: str, fix: str) -> None:
    """Raise a one-line :class:`UserError` when ``needed`` bytes exceed what ``device`` has free.

    ``what`` describes the tensors (``"a model of 1,578,000,252,448 parameters needs ..."`` is built from
    it); ``fix`` says which setting to lower."""
    have = available_bytes(device)
    if have is None or needed <= have:
        return
    where = "this GPU" if device.type == "cuda" else "this machine"
    raise UserError(f"{what} needs at least {gib(needed)} but {where} has {gib(have)} available — {fix}")


def count_parameters(build) -> int:
    """Parameters of the module ``build()`` makes, built on the meta device (no memory allocated)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def check_model(build, device: torch.device, fix: str) -> int:
    """Refuse a model that cannot be trained on ``device``: its weights, gradients and Adam moments in
    float32 must fit. Returns the parameter count."""
    params = count_parameters(build)
    check_fits(params * FLOAT_BYTES * TRAINING_COPIES, device,
               f"a model of {params:,} parameters (weights, gradients and Adam moments in float32)", fix)
    return params

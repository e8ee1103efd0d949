"""Where computation runs: the device a setting names, and the bf16 autocast every pass uses on CUDA."""

from __future__ import annotations

import torch

from varattn.errors import UserError


def resolve_device(spec: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (the process's own GPU under torchrun); anything else is
    passed to ``torch.device``."""
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(f"train.device={spec!r} is not a device — use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={spec!r} but CUDA is not available — use train.device=cpu or auto")
    return device


def autocast(device: torch.device, bf16: bool) -> torch.autocast:
    """bfloat16 autocast on CUDA when ``bf16`` is set; a disabled context elsewhere."""
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16)

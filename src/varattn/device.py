"""Where computation runs: the device a setting names, and the bf16 autocast every pass uses on CUDA (and
training on a CPU with native bf16 matrix products, when asked)."""

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


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX, through oneDNN); without
    it bf16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, bf16: bool, cpu_bf16: bool = False) -> torch.autocast:
    """bfloat16 autocast on CUDA when ``bf16`` is set, on a CPU when ``cpu_bf16`` is set and the CPU has
    native bf16 products (:func:`cpu_has_bf16`); a disabled context elsewhere."""
    if device.type == "cpu":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=cpu_bf16 and cpu_has_bf16())
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and bf16)

"""The one place a device is chosen: CUDA, then Apple's MPS, then the CPU."""
from __future__ import annotations

import torch

#: What a device may be named, for error messages.
ACCEPTED = "auto, cpu, cuda, cuda:N, mps or meta"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a ``torch.device``; ``None`` or ``"auto"`` picks cuda, then mps, then cpu.

    A name torch does not know (``tpu``), or a device that this machine lacks (``cuda`` without CUDA,
    ``cuda:3`` with one GPU), is a one-line ``ValueError`` that says what is accepted and available.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use {ACCEPTED}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was asked for but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {str(device)!r} was asked for but MPS is not available here; use 'cpu' or 'auto'")
    elif dev.type not in ("cpu", "meta"):
        raise ValueError(f"device {str(device)!r} is not one this library runs on; use {ACCEPTED}")
    return dev

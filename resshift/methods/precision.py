"""Device and precision of a method: the one check and the one autocast context."""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(device: str | torch.device, dtype: str | torch.dtype) -> tuple[torch.device, str]:
    """``(torch.device, "fp32" | "fp16" | "bf16")`` for a choice of device and precision.

    ``dtype`` may be a name of :data:`DTYPES` or a ``torch.dtype``. Half precision means CUDA
    autocast; ``ValueError`` for an unknown precision or half precision off CUDA.
    """
    if isinstance(dtype, torch.dtype):
        names = {v: k for k, v in DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"unsupported dtype {dtype}")
        dtype = names[dtype]
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    device = torch.device(device)
    if dtype != "fp32" and device.type != "cuda":
        raise ValueError(f"dtype {dtype} needs a CUDA device (autocast); on {device.type} use fp32")
    return device, dtype


def autocast(dtype: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast for half precision; a no-op for fp32."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])

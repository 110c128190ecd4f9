"""Where and in which precision a run computes: the device, the autocast dtype."""

from __future__ import annotations

import contextlib

import torch

from rladder.registry import ConfigError

from .distributed import Dist


def pick_device(name: str, dist: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and dist.world > 1:
        name = f"cuda:{dist.local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r} but this machine has no usable CUDA device; use 'auto' or 'cpu'")
    return device


def pick_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if name == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision = 'fp16' needs a GPU; use 'fp32' or 'bf16' on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

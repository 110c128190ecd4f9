"""Collectives on flags and values, usable with or without a process group (a single process: the flag itself)."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist


def largest(value: float, device: torch.device) -> float:
    """The largest of every process's ``value`` (a single process: the value itself)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return float(t.item())


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds in every process (a single process: the flag itself)."""
    return largest(0.0 if flag else 1.0, device) == 0.0


def any_true(flag: bool, device: torch.device) -> bool:
    return not all_true(not flag, device)

"""The training objective: run the model on a batch, sum the weighted task costs (paper section 2)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import torch
from torch import Tensor, nn

from .interfaces import DataSpec, Task


def needed_outputs(tasks: Mapping[str, Task]) -> set[str]:
    return {name for task in tasks.values() for name in task.needs().outputs}


def corrupt(batch: Mapping[str, Tensor], sigma: float) -> dict[str, Tensor]:
    """The batch with ``x_uncorrupted`` = x and, when ``sigma`` > 0, Gaussian noise added to x."""
    out = dict(batch)
    out["x_uncorrupted"] = batch["x"]
    if sigma > 0:
        out["x"] = batch["x"] + sigma * torch.randn_like(batch["x"])
    return out


def prepare(tasks: Mapping[str, Task], model: nn.Module, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Let every task add its no-grad targets (a clean pass, a teacher pass) to the batch."""
    out = dict(batch)
    out.setdefault("x_uncorrupted", batch["x"])
    for task in tasks.values():
        out.update(task.prepare(model, out))
    return out


def model_outputs(model: nn.Module, batch: Mapping[str, Tensor], spec: DataSpec,
                  keep: Collection[str] | None = None) -> dict[str, Tensor]:
    """``model(batch["x"])``: T steps of a sequence, or ``seq_len`` iterations on a static input."""
    outputs, _ = model(batch["x"], steps=spec.seq_len if spec.static else None, keep=keep)
    return outputs


def total_loss(tasks: Mapping[str, Task], outputs: Mapping[str, Tensor],
               batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_k weight_k * cost_k`` and the unweighted cost of every task (detached)."""
    parts: dict[str, Tensor] = {}
    total = None
    for label, task in tasks.items():
        cost = task.loss(outputs, batch)
        parts[label] = cost.detach()
        term = task.weight * cost
        total = term if total is None else total + term
    if total is None:
        total = torch.zeros((), device=next(iter(outputs.values())).device)
    return total, parts

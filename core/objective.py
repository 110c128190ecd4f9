"""The training objective: run the model on a batch, sum the weighted task costs (paper section 2)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .interfaces import DataSpec, Model, Task, map_tensors, tensor_leaves, zip_tensors


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


class Carry:
    """The model state carried from one batch to the next of a chunked loader (truncated
    back-propagation through time; batches with a ``carry`` (B,) bool key, see ``Loader``)."""

    def __init__(self) -> None:
        self.state: Any = None

    def run(self, model: Model, batch: Mapping[str, Tensor], spec: DataSpec,
            keep: Collection[str] | None = None, forward: nn.Module | None = None) -> dict[str, Tensor]:
        """``model_outputs``, starting from the carried state where ``batch["carry"]`` says so.
        ``forward`` runs the model (a DDP or compiled wrapper of ``model``; default: ``model``)."""
        forward = forward or model
        if "carry" not in batch:
            return model_outputs(forward, batch, spec, keep)
        state = self.start_state(model, batch)
        outputs, final = forward(batch["x"], state, keep=keep)
        self.state = model.detach_state(final)
        return outputs

    def start_state(self, model: Model, batch: Mapping[str, Tensor]) -> Any:
        carry, x = batch["carry"], batch["x"]
        fresh = model.init_state(len(x), x)
        if self.state is None or not bool(carry.any()):
            return fresh

        def pick(old: Tensor, new: Tensor) -> Tensor:
            return torch.where(carry.view(-1, *([1] * (new.dim() - 1))), old, new)
        return zip_tensors(pick, self.state, fresh)

    def state_dict(self) -> list[Tensor]:
        return [t.cpu() for t in tensor_leaves(self.state)] if self.state is not None else []

    def load_state_dict(self, leaves: list[Tensor], model: Model, like: Tensor) -> None:
        """Restore a carried state saved by ``state_dict`` (its batch size is that of the leaves)."""
        if not leaves:
            self.state = None
            return
        it = iter(leaves)
        template = model.init_state(leaves[0].shape[0], like)
        self.state = map_tensors(lambda t: next(it).to(t.device, t.dtype), template)


def total_loss(tasks: Mapping[str, Task], outputs: Mapping[str, Tensor],
               batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_k weight_k * scale_k * cost_k`` (``scale_k``: a weight ramp's fraction, else 1) and the
    unweighted cost of every task (detached)."""
    parts: dict[str, Tensor] = {}
    total = None
    for label, task in tasks.items():
        cost = task.loss(outputs, batch)
        parts[label] = cost.detach()
        term = task.weight * task.weight_scale * cost
        total = term if total is None else total + term
    if total is None:
        total = torch.zeros((), device=next(iter(outputs.values())).device)
    return total, parts

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
               batch: Mapping[str, Tensor], first: Collection[str] = ()) -> tuple[Tensor, dict[str, Tensor]]:
    """``sum_k weight_k * scale_k * cost_k`` (``scale_k``: a weight ramp's fraction, else 1) and the
    unweighted cost of every task (detached). With ``first`` (task labels) the first value is instead
    the pair ``stack([sum of those tasks' terms, sum of the others' terms])``, for the two backward
    passes of ``train.protect_task`` and ``train.link_gradient_tasks``."""
    parts: dict[str, Tensor] = {}
    terms: dict[str, Tensor] = {}
    for label, task in tasks.items():
        cost = task.loss(outputs, batch)
        parts[label] = cost.detach()
        terms[label] = task.weight * task.weight_scale * cost
    if first:
        head = [t.float() for label, t in terms.items() if label in first]
        rest = [t.float() for label, t in terms.items() if label not in first]
        return torch.stack([sum(head[1:], head[0]), sum(rest[1:], rest[0])]), parts
    total = None
    for term in terms.values():
        total = term if total is None else total + term
    if total is None:
        total = torch.zeros((), device=next(iter(outputs.values())).device)
    return total, parts


def _dot_and_cosine(main: list[Tensor], other: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """<other, main>, |main|^2 and the cosine of the two, each over all the tensors."""
    dot = torch.stack([(o * m).sum() for o, m in zip(other, main)]).sum()
    main_sq = torch.stack([m.pow(2).sum() for m in main]).sum()
    other_sq = torch.stack([o.pow(2).sum() for o in other]).sum()
    return dot, main_sq, dot / (main_sq * other_sq).sqrt().clamp_min(1e-30)


@torch.no_grad()
def gradient_cosine(main: list[Tensor], other: list[Tensor]) -> Tensor:
    """The cosine between two gradients given as lists of tensors (over all the tensors)."""
    return _dot_and_cosine(main, other)[2]


@torch.no_grad()
def project_conflict(main: list[Tensor], other: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """``main + other``, where ``other`` first loses its component along ``main`` if it points against
    it (``<other, main> < 0``, the dot product over all tensors); and the cosine of the two. One-sided
    gradient projection: the main task's gradient is never changed."""
    dot, main_sq, cos = _dot_and_cosine(main, other)
    coef = (dot / main_sq.clamp_min(1e-30)).clamp(max=0.0)     # < 0 only when they conflict
    summed = [o + (1.0 - coef) * m for o, m in zip(other, main)]
    return summed, cos


@torch.no_grad()
def cap_norms(main: list[Tensor], other: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """``main + other``, where in every tensor that ``main`` reaches (non-zero) ``other`` is first scaled
    down, if needed, to the norm of ``main`` there; and the share of those tensors that were scaled. In
    parameters that both train, the other tasks can then move Adam's update at most as much as the
    main task; parameters only they train keep their full gradient."""
    m_norm = torch.stack(torch._foreach_norm(main)).float()
    o_norm = torch.stack(torch._foreach_norm(other)).float()
    shared = m_norm > 0
    scale = torch.where(shared & (o_norm > m_norm), m_norm / o_norm.clamp_min(1e-30), torch.ones_like(m_norm))
    summed = [m + f.to(o.dtype) * o for m, o, f in zip(main, other, scale.unbind())]
    return summed, ((scale < 1) & shared).float().sum() / shared.float().sum().clamp_min(1)

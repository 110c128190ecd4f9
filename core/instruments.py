"""Training instruments: gradient norms before clipping, the share of clipped steps, and the RMS of
every level's encoder and decoder output, summed over a log interval and written with each
training log line of ``metrics.jsonl``.

Keys of a training record (all averages over the steps of the interval):

* ``grad_norm``: the global gradient norm before clipping; ``grad_norm_max``: its largest value;
* ``clipped``: the fraction of steps whose gradient was clipped (``train.clip_grad_norm``);
* ``grad_norm/<part>``: the gradient norm of one part's parameters (``encoder.<l>``,
  ``decoder.<l>``, ``heads.<name>``, ``feedback.<l>`` for learned link gates, ``tasks.<label>``,
  ``other``);
* ``rms/<part>``: the root mean square of a part's output (``encoder.<l>`` is e_l(t),
  ``decoder.<l>`` is d_l(t), ``feedback.<l>`` is what encoder l receives of d_l(t-1)), over every
  step t of every training batch (not recorded with ``train.compile``: forward hooks stay out of
  compiled graphs).

Everything stays on the training device until the log line is written (no host synchronisation
per step); the cost is one norm per parameter tensor and one square-mean per part output per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn


class Instruments:
    """Gradient and activation statistics of one training loop (see module docstring)."""

    def __init__(self, parts: Mapping[str, nn.Module], params: Mapping[str, Iterable[nn.Parameter]]):
        self.parts = dict(parts)
        # parameter groups: every trainable parameter in exactly one group, in a fixed order
        seen: set[int] = set()
        groups: list[tuple[str, list[nn.Parameter]]] = []
        for name, ps in params.items():
            mine = [p for p in ps if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in mine)
            if mine:
                groups.append((name, mine))
        self.group_names = [name for name, _ in groups]
        self.params = [p for _, ps in groups for p in ps]
        self.group_of = torch.tensor([i for i, (_, ps) in enumerate(groups) for _ in ps], dtype=torch.long)
        self.active = False
        self._hooks = [module.register_forward_hook(self._hook(name)) for name, module in self.parts.items()]
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.sq_groups: Tensor | None = None
        self.norm_sum: Tensor | None = None
        self.norm_max: Tensor | None = None
        self.clipped: Tensor | None = None
        self.act_sq: dict[str, Tensor] = {}
        self.act_n: dict[str, int] = {}

    def close(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not self.active:
                return
            out = output[0] if isinstance(output, tuple) else output
            if not isinstance(out, Tensor):
                return
            sq = out.detach().float().pow(2).mean()
            self.act_sq[name] = self.act_sq[name] + sq if name in self.act_sq else sq
            self.act_n[name] = self.act_n.get(name, 0) + 1
        return hook

    @torch.no_grad()
    def clip(self, max_norm: float) -> Tensor:
        """Record the gradient norms of this step, then clip the global norm to ``max_norm`` (0 = no
        clipping), as ``torch.nn.utils.clip_grad_norm_`` does. Returns the norm before clipping."""
        with_grad = [(i, p.grad) for i, p in enumerate(self.params) if p.grad is not None]
        if not with_grad:
            return torch.zeros(())
        grads = [g for _, g in with_grad]
        norms = torch.stack(torch._foreach_norm(grads)).float()
        device = norms.device
        key = (tuple(i for i, _ in with_grad), device)
        if getattr(self, "_index_key", None) != key:      # built once: no host-to-device copy per step
            self._index = torch.tensor([int(self.group_of[i]) for i, _ in with_grad], dtype=torch.long, device=device)
            self._index_key = key
        sq = torch.zeros(len(self.group_names), device=device).index_add_(0, self._index, norms.pow(2))
        total = sq.sum().sqrt()
        clipped = torch.zeros((), device=device)
        if max_norm > 0:
            coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
            torch._foreach_mul_(grads, coef.to(grads[0].dtype))
            clipped = (total > max_norm).float()
        self.steps += 1
        self.sq_groups = sq if self.sq_groups is None else self.sq_groups + sq
        self.norm_sum = total if self.norm_sum is None else self.norm_sum + total
        self.norm_max = total if self.norm_max is None else torch.maximum(self.norm_max, total)
        self.clipped = clipped if self.clipped is None else self.clipped + clipped
        return total

    def record(self, world: int = 1) -> dict[str, Any]:
        """The interval's statistics (averaged over processes too), then a fresh interval."""
        if not self.steps:
            return {}
        names = sorted(self.act_sq)
        values = [self.norm_sum / self.steps, self.clipped / self.steps,
                  *(self.sq_groups / self.steps).sqrt(),
                  *[(self.act_sq[n] / self.act_n[n]).sqrt() for n in names]]
        flat = torch.stack([v.reshape(()).float() for v in values])
        peak = self.norm_max.reshape(1).float()
        if world > 1:
            torch.distributed.all_reduce(flat)
            flat = flat / world
            torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
        flat = flat.tolist()
        out: dict[str, Any] = {"grad_norm": flat[0], "grad_norm_max": float(peak[0]), "clipped": flat[1]}
        k = 2
        for name in self.group_names:
            out[f"grad_norm/{name}"] = flat[k]
            k += 1
        for name in names:
            out[f"rms/{name}"] = flat[k]
            k += 1
        self.reset()
        return out

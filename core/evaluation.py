"""Evaluation: the mean losses and every task metric over a split, for training's validation and
for `rladder eval`, which writes a trained run's results to RUN_DIR/eval-<split>.json."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rladder.registry import get_registry

from .data import make_loader
from .devices import autocast, pick_device, pick_precision
from .distributed import Dist
from .files import write_text
from .interfaces import Loader, to_device
from .objective import Carry, needed_outputs, prepare, total_loss
from .runs import load_trained


@torch.no_grad()
def evaluate(model: nn.Module, tasks: Mapping[str, Any], spec, loader: Loader, device: torch.device,
             autocast_dtype: torch.dtype | None = None, max_batches: int = 0) -> dict[str, float]:
    """Mean total loss, mean cost per task and every task metric over (part of) a split."""
    was_training = model.training
    model.eval()
    for task in tasks.values():
        task.reset_metrics()
    keep = needed_outputs(tasks)
    carry = Carry()          # the model state across the chunks of long sequences (see Loader)
    sums: dict[str, torch.Tensor] = {}
    count = torch.zeros((), dtype=torch.float64, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for i, batch in enumerate(loader):
            if max_batches and i >= max_batches:
                break
            batch = to_device(batch, device, non_blocking=True)
            with autocast(device, autocast_dtype):
                batch = prepare(tasks, model, batch)
                outputs = carry.run(model, batch, spec, keep)
                loss, parts = total_loss(tasks, outputs, batch)
            n = len(batch["x"])
            for key, value in {"loss": loss.detach(), **{f"{k}/loss": v for k, v in parts.items()}}.items():
                sums[key] = sums.get(key, 0) + value.double() * n
            count += n
            for task in tasks.values():
                task.update_metrics(outputs, batch)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for key in sorted(sums):
            torch.distributed.all_reduce(sums[key])
        torch.distributed.all_reduce(count)
    result = {k: float(v / count.clamp(min=1)) for k, v in sums.items()}
    for label, task in tasks.items():
        result.update({f"{label}/{k}": v for k, v in task.compute_metrics().items()})
    model.train(was_training)
    return result


def evaluate_all(model: nn.Module, tasks: Mapping[str, Any], spec, loader: Loader, device: torch.device,
                 autocast_dtype: torch.dtype | None = None, max_batches: int = 0) -> dict[str, float]:
    """``evaluate`` for the model and for every extra model a task offers (a mean teacher's teacher),
    whose results are named ``<task>/<model>/<metric>``."""
    results = evaluate(model, tasks, spec, loader, device, autocast_dtype, max_batches)
    for label, task in tasks.items():
        for name, extra in task.extra_models().items():
            more = evaluate(extra, tasks, spec, loader, device, autocast_dtype, max_batches)
            results.update({f"{label}/{name}/{k}": v for k, v in more.items()})
    return results


def evaluate_run(run_dir: str | Path, split: str = "test", which: str = "best") -> dict[str, Any]:
    reg = get_registry()
    run_dir = Path(run_dir)
    config, run, step = load_trained(run_dir, which, reg)
    run.dataset.check_split(split)
    device = pick_device(config.train.device, Dist())
    run.model.to(device)
    tasks = torch.nn.ModuleDict(run.tasks).to(device)
    loader = make_loader(run, config, split, train=False, dist=Dist(), registry=reg, device=device)
    metrics = evaluate_all(run.model, tasks, run.spec, loader, device, pick_precision(config.train.precision, device))
    has_best = (run_dir / "checkpoints" / "best.pt").is_file()
    which_used = "best" if has_best and which == "best" else "last"
    results = {"split": split, "checkpoint": which_used, "step": step, "metrics": metrics,
               "headline": headline_keys(run.tasks, metrics)}
    # eval-<split>.json is the run's own result (its best checkpoint, or its last when it kept no best), written by
    # training and read by `rladder reproduce`; the last checkpoint asked for beside a best one must not replace it
    name = f"eval-{split}-last.json" if has_best and which == "last" else f"eval-{split}.json"
    write_text(run_dir / name, json.dumps(results, indent=2) + "\n")
    return results


def headline_keys(tasks, metrics) -> list[str]:
    """The keys worth printing: the losses and each task's headline metrics with their baselines,
    for the model and for every extra model a task evaluates (``<task>/<model>/...``)."""
    wanted = ["loss"] + [f"{label}/loss" for label in tasks]
    for label, task in tasks.items():
        for m in task.metrics():
            wanted += [f"{label}/{m.name}"] + ([f"{label}/{m.baseline}"] if m.baseline else [])
    extra = [f"{label}/{name}/" for label, task in tasks.items() for name in task.extra_models()]
    wanted += [prefix + key for prefix in extra for key in list(wanted)]
    return [k for k in wanted if k in metrics]


def format_results(results: dict[str, Any], title: str) -> str:
    """The headline metrics as aligned lines (every metric is in the JSON file)."""
    keys = results.get("headline") or sorted(results["metrics"])
    lines = [f"{title}:"]
    for key in keys:
        lines.append(f"  {key:<40} {results['metrics'][key]:.4f}")
    return "\n".join(lines)

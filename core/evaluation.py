"""`rladder eval`: a trained run's metrics on one split, written to RUN_DIR/eval-<split>.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from rladder.registry import get_registry

from .files import write_text
from .runs import load_trained
from .train import Dist, evaluate_all, make_loader, pick_device, pick_precision


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
    which_used = "best" if (run_dir / "checkpoints" / "best.pt").is_file() and which == "best" else "last"
    results = {"split": split, "checkpoint": which_used, "step": step, "metrics": metrics}
    write_text(run_dir / f"eval-{split}.json", json.dumps(results, indent=2) + "\n")
    return results


def format_results(results: dict[str, Any], title: str) -> str:
    lines = [f"{title}:"]
    for key, value in sorted(results["metrics"].items()):
        if "/error_t" in key:
            continue
        lines.append(f"  {key:<40} {value:.4f}")
    return "\n".join(lines)

"""`rladder viz`: learning curves, training instruments, and the pictures the plugins draw.

* ``curves.png``: the training loss and every task's headline metrics (``Task.metrics()``) on the
  validation split, with their units and the reference metric each names as its baseline;
* ``diagnostics.png``: gradient norms before clipping, the share of clipped steps and the RMS of
  e_l(t) and d_l(t) per level (``rladder.core.instruments``);
* every figure that the run's tasks (``Task.figures``) and its dataset (``Dataset.figures``)
  draw for a few samples of a split, each saved as ``<name>.png`` (the Occluded Moving MNIST
  dataset draws ``predictions.png``, like the paper's Fig. 4).

Core draws nothing dataset-specific: what a sample looks like is the plugins' business.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .interfaces import Metric  # noqa: E402
from .objective import model_outputs  # noqa: E402
from .runs import load_trained  # noqa: E402


def write_pictures(run_dir, split: str = "test", samples: int = 4, which: str = "best") -> list[Path]:
    """Draw every picture of a run; returns their paths."""
    run_dir = Path(run_dir)
    config, run, step = load_trained(run_dir, which)
    headline = {label: task.metrics() for label, task in run.tasks.items()}
    paths = [p for p in (learning_curves(run_dir, headline), diagnostics(run_dir)) if p]
    run.dataset.check_split(split)
    arrays = run.dataset.arrays(split)
    stored = {k: torch.from_numpy(v[:samples]) for k, v in arrays.items()}
    batch = run.dataset.to_batch(stored)
    with torch.no_grad():
        outputs = model_outputs(run.model, batch, run.spec)
    predictions: dict[str, torch.Tensor] = {}
    for task in run.tasks.values():
        predictions.update(task.predictions(outputs))
    figures = {}
    for task in run.tasks.values():
        figures.update(task.figures(batch, outputs, predictions))
    figures.update(run.dataset.figures(batch, predictions))
    title = f"{config.model['name']} on {config.data['name']} ({split} split), checkpoint of step {step}"
    for name, fig in figures.items():
        caption = fig.get_suptitle()
        fig.suptitle(title + (f"\n{caption}" if caption else ""), fontsize=9)
        out = run_dir / f"{name}.png"
        fig.savefig(out, dpi=110)
        plt.close(fig)
        paths.append(out)
    return paths


def learning_curves(run_dir: Path, headline: dict[str, list[Metric]]) -> Path | None:
    """``curves.png``: the loss (train and validation) and each task's headline metrics on validation."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    panels = [(label, m) for label, ms in headline.items() for m in ms]
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(4.2 * (1 + len(panels)), 3.3), squeeze=False)
    ax = axes[0][0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="training (interval mean)")
    pts = [(r["step"], r["loss"]) for r in val if "loss" in r]
    if pts:
        ax.plot(*zip(*pts), "o-", ms=3, label="validation")
    ax.set_title("total loss (weighted sum of task costs)", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    for ax, (label, metric) in zip(axes[0][1:], panels):
        key = f"{label}/{metric.name}"
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax.plot(*zip(*pts), "o-", ms=3, label=f"validation ({'lower' if metric.better == 'min' else 'higher'} is better)")
        base = f"{label}/{metric.baseline}" if metric.baseline else ""
        ref = [(r["step"], r[base]) for r in val if base and base in r]
        if ref:
            ax.plot(*zip(*ref), "--", color="tab:gray", label="baseline: " + metric.baseline.replace("_", " "))
        ax.set_title(f"{label}: {metric.title}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"{metric.title} ({metric.unit})" if metric.unit else metric.title, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = run_dir / "curves.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def diagnostics(run_dir: Path) -> Path | None:
    """``diagnostics.png``: gradient norms before clipping (total, per part), the share of clipped
    steps, and the RMS of every level's e_l(t) and d_l(t), from the training lines of metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    train = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in train if r.get("split") == "train" and "grad_norm" in r]
    if not train:
        return None
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ax = axes[0]
    ax.plot(steps, [r["grad_norm"] for r in train], label="mean over interval")
    ax.plot(steps, [r["grad_norm_max"] for r in train], "--", label="max over interval")
    clip = _clip_threshold(run_dir)
    if clip:
        ax.axhline(clip, color="k", lw=0.8, ls=":", label=f"clip threshold {clip:g}")
    ax.set_yscale("log")
    ax.set_title("gradient norm before clipping", fontsize=9)
    ax.set_xlabel("step")
    twin = ax.twinx()
    twin.plot(steps, [100 * r["clipped"] for r in train], color="tab:red", lw=0.8, alpha=0.6)
    twin.set_ylabel("steps clipped (%)", color="tab:red", fontsize=8)
    twin.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="upper right")
    for ax, prefix, title in ((axes[1], "grad_norm/", "gradient norm per part (before clipping)"),
                              (axes[2], "rms/", "RMS of outputs: e_l(t) solid, d_l(t) dashed, link dotted")):
        keys = sorted({k for r in train for k in r if k.startswith(prefix)}, key=_part_order)
        for i, key in enumerate(keys):
            part = key[len(prefix):]
            style = "--" if part.startswith("decoder.") else ":" if part.startswith("feedback.") else "-"
            color = plt.cm.viridis(_level(part) / max(1, _top_level(keys))) if _level(part) >= 0 else "tab:gray"
            ax.plot(steps, [r.get(key, float("nan")) for r in train], style, color=color, lw=1, label=part)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        if keys:
            ax.set_yscale("log")
            ax.legend(fontsize=6, ncol=2, loc="best")
        else:   # a model without ladder levels (a plugin's plain module) logs no per-level outputs
            ax.text(0.5, 0.5, "not logged: the model has no\nencoder / decoder levels", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9, color="0.4")
    levels = any(_level(k.split("/", 1)[1]) >= 0 for r in train for k in r if k.startswith(("grad_norm/", "rms/")))
    fig.suptitle(f"training instruments of {run_dir.name}"
                 + (" (level colour: dark = bottom, yellow = top)" if levels else ""), fontsize=9)
    fig.tight_layout()
    out = run_dir / "diagnostics.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _level(part: str) -> int:
    _, _, idx = part.partition(".")
    return int(idx) if idx.isdigit() else -1


def _top_level(keys) -> int:
    return max([_level(k.split("/", 1)[1]) for k in keys] + [1])


def _part_order(key: str):
    part = key.split("/", 1)[1]
    return (_level(part) < 0, _level(part), part)


def _clip_threshold(run_dir: Path) -> float:
    import tomllib
    try:
        return float(tomllib.loads((run_dir / "config.toml").read_text())["train"]["clip_grad_norm"])
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        return 0.0

"""`rladder viz`: pictures of what a trained run predicts, and its learning curves.

``predictions.png`` follows the paper's Fig. 4 for video: per sequence, the un-occluded ground
truth (when the data has it), the input frames, the predicted next frame under the frame it
follows, and the class belief at every step. Piano rolls show input and prediction as images
(time x pitch). ``curves.png`` plots the training loss and every validation metric from
``metrics.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .objective import model_outputs  # noqa: E402
from .runs import load_trained  # noqa: E402


def write_pictures(run_dir, split: str = "test", samples: int = 4, which: str = "best") -> list[Path]:
    run_dir = Path(run_dir)
    paths = []
    curves = learning_curves(run_dir)
    if curves:
        paths.append(curves)
    diag = diagnostics(run_dir)
    if diag:
        paths.append(diag)
    paths.append(prediction_picture(run_dir, split, samples, which))
    return paths


@torch.no_grad()
def prediction_picture(run_dir: Path, split: str, samples: int, which: str) -> Path:
    config, run, step = load_trained(run_dir, which)
    run.dataset.check_split(split)
    stored = {k: torch.from_numpy(v[:samples]) for k, v in run.dataset.arrays(split).items()}
    batch = run.dataset.to_batch(stored)
    outputs = model_outputs(run.model, batch, run.spec)
    preds: dict[str, torch.Tensor] = {}
    for task in run.tasks.values():
        preds.update(task.predictions(outputs))
    n = len(batch["x"])
    video = run.spec.modality == "video" and not run.spec.static
    frame_preds = [v for v in preds.values() if v.dim() == 5]
    beliefs = [v for v in preds.values() if v.dim() == 3]
    if video:
        rows = (["ground truth"] if "x_clean" in batch else []) + ["input"] + \
               (["predicted next"] if frame_preds else []) + (["class belief"] if beliefs else [])
        T = batch["x"].shape[1]
        fig, axes = plt.subplots(n * len(rows), T + 1, figsize=(1.5 * (T + 1), 1.5 * n * len(rows)), squeeze=False)
        for i in range(n):
            for r, name in enumerate(rows):
                ax_row = axes[i * len(rows) + r]
                ax_row[0].text(0.95, 0.5, name + (f"\n(label {int(batch['y'][i])})" if "y" in batch and r == 0 else ""),
                               ha="right", va="center", fontsize=8)
                ax_row[0].axis("off")
                for t in range(T):
                    ax = ax_row[t + 1]
                    if name == "class belief":
                        probs = beliefs[0][i, t].numpy()
                        ax.bar(range(len(probs)), probs, color=["tab:red" if k == int(batch["y"][i]) else "tab:gray"
                                                                for k in range(len(probs))])
                        ax.set_ylim(0, 1)
                        ax.set_xticks(range(len(probs)))
                        ax.tick_params(labelsize=5)
                        continue
                    image = {"ground truth": batch.get("x_clean"), "input": batch["x"],
                             "predicted next": frame_preds[0] if frame_preds else None}[name][i, t]
                    ax.imshow(_image(image), cmap="gray", vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if i == 0 and r == 0:
                        ax.set_title(f"t = {t + 1}", fontsize=8)
    else:
        fig, axes = plt.subplots(n, 1 + len(frame_preds), figsize=(4 * (1 + len(frame_preds)), 2 * n), squeeze=False)
        for i in range(n):
            axes[i][0].imshow(_roll(batch["x"][i]), aspect="auto", cmap="gray_r")
            axes[i][0].set_title("input", fontsize=8)
            for j, p in enumerate(frame_preds):
                axes[i][j + 1].imshow(_roll(p[i]), aspect="auto", cmap="gray_r", vmin=0, vmax=1)
                axes[i][j + 1].set_title("predicted next step", fontsize=8)
    fig.suptitle(f"{config.model['name']} on {config.data['name']} ({split}), checkpoint step {step}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_size_inches()[1]))
    path = run_dir / "predictions.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _image(t: torch.Tensor) -> np.ndarray:
    t = t.float()
    return (t[0] if t.shape[0] == 1 else t.permute(1, 2, 0)).clamp(0, 1).numpy()


def _roll(t: torch.Tensor) -> np.ndarray:
    return t.float().reshape(t.shape[0], -1).T.numpy()


def learning_curves(run_dir: Path) -> Path | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    keys = ["loss"] + sorted({k for r in val for k in r if k.endswith(("/error", "/prediction_error"))})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        if key == "loss" and train:
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=1)
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax.plot(*zip(*pts), "o-", label="validation", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
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
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6, ncol=2, loc="best")
    fig.suptitle(f"training instruments of {run_dir.name} (level colour: dark = bottom, yellow = top)", fontsize=9)
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

"""Occluded Moving MNIST (paper section 3.1, spec section 4.1.1), generated deterministically.

A 14x14 digit (2x2 mean pooling of MNIST) moves on a 32x32 canvas with one of eight velocities
{(+-1, +-2), (+-2, +-1)} px/frame, bouncing off the borders (p < 0 -> -p, p > 18 -> 36 - p,
flipping that velocity component). Bars 4 px wide with 8 visible px between them cover rows and
columns 8-11 and 20-23 (a 3x3 grid of 8x8 windows). Occluded pixels read 0, like the background
(the paper's white-on-white; polarity does not matter to the network).

``frames`` input frames plus one more, so each input frame has a next-frame target. The optimal
reconstruction (spec 4.1.1 item 8) keeps every digit pixel seen un-occluded in any input frame,
in the digit's own frame of reference, pasted at the centre of a 32x32 canvas. MNIST training
digits 0..49999 make the train split, 50000..59999 the validation split, test digits the test
split. Each split draws its digits (a seeded permutation, cycled if more sequences than digits),
start positions and velocities from a generator seeded by (seed, split).

Stored per sequence (uint8): ``clean`` (T+1, 1, 32, 32) un-occluded frames, ``recon``
(1, 32, 32), and ``y``. A batch (``to_batch``) holds ``x`` (B, T, 1, 32, 32) occluded input
frames, ``x_next`` (B, T, 1, 32, 32) the occluded frames t+1 (targets), ``x_clean``
(B, T, 1, 32, 32) the un-occluded input frames, ``y`` (B,); all float32 in [0, 1]. With
``input = "recon"`` a batch is the static gold-standard input: ``x`` (B, 1, 32, 32), ``y``.
"""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch

from rladder.core import DataSpec, Dataset
from rladder.registry import Component, hookimpl, option, positive

from .mnist import MNISTSource, load_mnist, split_arrays

CANVAS, DIGIT, LIMIT = 32, 14, 32 - 14
VELOCITIES = np.array([(1, 2), (1, -2), (-1, 2), (-1, -2), (2, 1), (2, -1), (-2, 1), (-2, -1)], np.int64)
BARS = (slice(8, 12), slice(20, 24))


def visibility() -> np.ndarray:
    """(32, 32) 1 where pixels are visible, 0 on the bars."""
    mask = np.ones((CANVAS, CANVAS), np.uint8)
    for bar in BARS:
        mask[bar, :] = 0
        mask[:, bar] = 0
    return mask


def downsample(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 14, 14) uint8 by 2x2 mean pooling (rounded)."""
    x = images.reshape(-1, 14, 2, 14, 2).astype(np.uint16).sum((2, 4))
    return ((x + 2) // 4).astype(np.uint8)


def trajectories(rng: np.random.Generator, n: int, steps: int) -> np.ndarray:
    """(n, steps, 2) integer top-left positions (row, col) of the digit, bouncing off the borders."""
    pos = np.empty((n, steps, 2), np.int64)
    p = rng.integers(0, LIMIT + 1, (n, 2))
    v = VELOCITIES[rng.integers(0, len(VELOCITIES), n)].copy()
    pos[:, 0] = p
    for t in range(1, steps):
        p = p + v
        low, high = p < 0, p > LIMIT
        p = np.where(low, -p, np.where(high, 2 * LIMIT - p, p))
        v = np.where(low | high, -v, v)
        pos[:, t] = p
    return pos


def render(digits: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Clean frames (n, steps, 32, 32) uint8: each 14x14 digit pasted at its positions."""
    n, steps, _ = pos.shape
    out = np.zeros((n, steps, CANVAS, CANVAS), np.uint8)
    i = np.arange(DIGIT)
    rows = pos[:, :, 0, None] + i                                # (n, steps, 14)
    cols = pos[:, :, 1, None] + i
    flat = (np.arange(n * steps).reshape(n, steps, 1, 1) * (CANVAS * CANVAS)
            + rows[:, :, :, None] * CANVAS + cols[:, :, None, :])  # (n, steps, 14, 14)
    out.reshape(-1)[flat.reshape(-1)] = np.broadcast_to(digits[:, None], flat.shape).reshape(-1)
    return out


def optimal_reconstruction(digits: np.ndarray, pos: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, 32, 32) uint8: digit pixels visible in any of the given frames, pasted at the centre."""
    i = np.arange(DIGIT)
    rows = pos[:, :, 0, None, None] + i[:, None]                  # (n, T, 14, 1)
    cols = pos[:, :, 1, None, None] + i[None, :]                  # (n, T, 1, 14)
    seen = mask[rows, cols].any(axis=1)                            # (n, 14, 14)
    out = np.zeros((len(digits), CANVAS, CANVAS), np.uint8)
    off = (CANVAS - DIGIT) // 2
    out[:, off:off + DIGIT, off:off + DIGIT] = digits * seen
    return out


def generate(digits: np.ndarray, rng: np.random.Generator, frames: int, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Sequences for ``digits`` (n, 14, 14): clean (n, frames+1, 1, 32, 32), recon (n, 1, 32, 32)."""
    n = len(digits)
    pos = trajectories(rng, n, frames + 1)
    mask = visibility()
    clean = np.empty((n, frames + 1, 1, CANVAS, CANVAS), np.uint8)
    recon = np.empty((n, 1, CANVAS, CANVAS), np.uint8)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        clean[s:e, :, 0] = render(digits[s:e], pos[s:e])
        recon[s:e, 0] = optimal_reconstruction(digits[s:e], pos[s:e, :frames], mask)
    return {"clean": clean, "recon": recon, "pos": pos}


@attrs.frozen
class OccludedMNISTOptions:
    train: int = option(10000, help="Training sequences (from MNIST training digits 0..49999).", validator=positive)
    val: int = option(2000, help="Validation sequences (from training digits 50000..59999).", validator=positive)
    test: int = option(10000, help="Test sequences (from the MNIST test digits).", validator=positive)
    frames: int = option(5, help="Input frames per sequence (one more is generated as the last target).",
                         validator=positive)
    input: Literal["frames", "recon"] = option(
        "frames", help="frames: the occluded video; recon: the optimal reconstruction (static, gold standard).")
    seed: int = option(0, help="Seed of digit choice, start positions and velocities.")
    mnist: MNISTSource = option(factory=MNISTSource, help="Where MNIST comes from (see dataset 'mnist').")


class OccludedMNIST(Dataset):
    def __init__(self, options: OccludedMNISTOptions):
        self.options = o = options
        self.mask = torch.from_numpy(visibility()).float()
        self._generated: dict[str, dict[str, np.ndarray]] = {}
        if o.input == "recon":
            self.spec = DataSpec("video", (1, CANVAS, CANVAS), 1,
                                 {"x": "(B,1,32,32) float32 optimal reconstruction", "y": "(B,) int64 digit"},
                                 num_classes=10, static=True)
        else:
            frames = f"(B,{o.frames},1,32,32) float32 in [0,1]"
            self.spec = DataSpec("video", (1, CANVAS, CANVAS), o.frames,
                                 {"x": f"{frames} occluded input frames", "x_next": f"{frames} occluded frames t+1",
                                  "x_clean": f"{frames} un-occluded input frames", "y": "(B,) int64 digit"},
                                 num_classes=10)

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        """Generated once per split and kept: the label plan and the loader read the same arrays."""
        self.check_split(split)
        if split not in self._generated:
            self._generated[split] = self._generate(split)
        return self._generated[split]

    def _generate(self, split: str) -> dict[str, np.ndarray]:
        o = self.options
        images, labels = split_arrays(load_mnist(o.mnist), split)
        n = {"train": o.train, "val": o.val, "test": o.test}[split]
        rng = np.random.default_rng([o.seed, ("train", "val", "test").index(split)])
        pick = np.concatenate([rng.permutation(len(images)) for _ in range(-(-n // len(images)))])[:n]
        data = generate(downsample(images[pick]), rng, o.frames)
        return {"clean": data["clean"], "recon": data["recon"], "y": labels[pick].astype(np.int64)}

    def to_batch(self, stored):
        if self.options.input == "recon":
            return {"x": stored["recon"].float().div_(255), "y": stored["y"]}
        clean = stored["clean"].float().div_(255)                  # (B, T+1, 1, 32, 32)
        occluded = clean * self.mask.to(clean.device)          # follows the batch: CPU, GPU or meta
        return {"x": occluded[:, :-1], "x_next": occluded[:, 1:], "x_clean": clean[:, :-1], "y": stored["y"]}

    def figures(self, batch, predictions):
        """``predictions.png``, like the paper's Fig. 4 (see ``draw_sequences``)."""
        if self.options.input == "recon":
            return {}
        return {"predictions": draw_sequences(batch, predictions, visibility())}

    def dummy_batch(self, batch: int = 2, generator: torch.Generator | None = None):
        seed = int(torch.randint(0, 2**31, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        digits = (rng.random((batch, DIGIT, DIGIT)) * 255).astype(np.uint8)
        data = generate(digits, rng, self.options.frames)
        stored = {"clean": torch.from_numpy(data["clean"]), "recon": torch.from_numpy(data["recon"]),
                  "y": torch.from_numpy(rng.integers(0, 10, batch))}
        return self.to_batch(stored)


def draw_sequences(batch, predictions, visible: np.ndarray):
    """Per sequence: the un-occluded frames, the occluded input with the bars shaded, the predicted
    frame under the frame it predicts, and the class belief after each frame (true label in red).

    Columns are frames 1..T+1; frame T+1 is the last prediction's target, never shown to the model.
    ``predictions`` may hold ``next_frame`` (B, T, 1, 32, 32) and ``class_probs`` (B, T, K).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    x, x_next, clean, y = batch["x"], batch["x_next"], batch["x_clean"], batch["y"]
    frames = predictions.get("next_frame")
    beliefs = predictions.get("class_probs")
    n, T = x.shape[:2]
    rows = ["un-occluded (never shown)", "input: occluded frames"] + (["predicted frame"] if frames is not None else []) \
        + (["class belief"] if beliefs is not None else [])
    bars = np.ma.masked_where(visible > 0, np.ones_like(visible, dtype=float))
    shade = ListedColormap(["tab:blue"])
    fig, axes = plt.subplots(n * len(rows), T + 2, figsize=(1.45 * (T + 2), 1.45 * n * len(rows) + 1.0),
                             squeeze=False, gridspec_kw={"width_ratios": [1.6] + [1] * (T + 1)})
    for i in range(n):
        for r, name in enumerate(rows):
            row = axes[i * len(rows) + r]
            label = f"{name}\n(true label {int(y[i])})" if r == 0 else name
            row[0].text(0.98, 0.5, label, ha="right", va="center", fontsize=7)
            row[0].axis("off")
            for f in range(1, T + 2):                       # frame number f is column f
                ax = row[f]
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0 and r == 0:
                    ax.set_title(f"frame {f}" + (" (target)" if f == T + 1 else ""), fontsize=7)
                if name.startswith("un-occluded"):
                    image = clean[i, f - 1] if f <= T else None
                elif name.startswith("input"):
                    image = x[i, f - 1] if f <= T else x_next[i, -1]
                elif name == "predicted frame":
                    image = frames[i, f - 2] if f >= 2 else None
                else:
                    image = None
                    if f <= T:
                        probs = beliefs[i, f - 1].float().numpy()
                        ax.bar(range(len(probs)), probs, color=["tab:red" if k == int(y[i]) else "tab:gray"
                                                                for k in range(len(probs))])
                        ax.set_ylim(0, 1)
                        ax.set_xticks(range(len(probs)))
                        ax.tick_params(labelsize=5)
                    else:
                        ax.axis("off")
                    continue
                if image is None:
                    ax.axis("off")
                    continue
                ax.imshow(image.float()[0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
                if name.startswith("input"):
                    ax.imshow(bars, cmap=shade, alpha=0.25, vmin=0, vmax=1)
                    if f == T + 1:
                        ax.set_xlabel("not shown to the model", fontsize=5)
    fig.suptitle("Blue shading: the occluding bars (the model sees 0 there). 'predicted frame' under frame f: "
                 "the prediction of frame f made after frames 1..f-1.\nclass belief under frame f: class "
                 "probabilities after frames 1..f, classes 0-9 left to right, the true class in red.", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / fig.get_size_inches()[1]))
    return fig


@hookimpl
def rladder_components():
    return [Component("dataset", "occluded_mnist", OccludedMNIST, OccludedMNISTOptions,
                      "Occluded Moving MNIST (paper 3.1): 14x14 digits behind a grid of bars, 32x32.",
                      example={"data": {"train": 64, "val": 16, "test": 16}})]   # small splits for the kit

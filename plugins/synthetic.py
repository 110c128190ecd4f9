"""A synthetic dataset of any shape, for contract checks, smoke tests and examples.

Each class has a fixed random prototype; a sample is its class prototype plus fresh Gaussian
noise at every step, clipped to [0, 1]. A model can learn it, so smoke runs show falling
losses, but it says nothing about any paper result. Deterministic from ``seed``.
"""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np

from rladder.core import DataSpec, Dataset
from rladder.registry import Component, hookimpl, non_negative, option, positive

LAYOUT = {"video": "(B,T,C,H,W)", "sequence": "(B,T,C,L)", "vector": "(B,T,D)"}


@attrs.frozen
class SyntheticOptions:
    modality: Literal["video", "sequence", "vector"] = option("video", help="video, sequence or vector steps.")
    step_shape: tuple[int, ...] = option((1, 32, 32), help="Shape of one step: (C,H,W), (C,L) or (D,).",
                                         validator=positive)
    seq_len: int = option(5, help="Steps per sample (iterations when static).", validator=positive)
    num_classes: int = option(10, help="Classes (0: no labels).", validator=non_negative)
    static: bool = option(False, help="One static input per sample, shown at every step.")
    train: int = option(256, help="Training samples.", validator=positive)
    val: int = option(64, help="Validation samples.", validator=positive)
    test: int = option(64, help="Test samples.", validator=positive)
    noise: float = option(0.2, help="Standard deviation of the per-step noise.", validator=non_negative)
    seed: int = option(0, help="Seed of prototypes and noise.")


class SyntheticDataset(Dataset):
    def __init__(self, options: SyntheticOptions):
        o = self.options = options
        layout = LAYOUT[o.modality].replace("T,", "") if o.static else LAYOUT[o.modality]
        keys = {"x": f"{layout} float32 in [0,1]"}
        if o.num_classes:
            keys["y"] = "(B,) int64 class"
        self.spec = DataSpec(o.modality, o.step_shape, o.seq_len, keys, o.num_classes, static=o.static)

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        o = self.options
        n = {"train": o.train, "val": o.val, "test": o.test}[split]
        rng = np.random.default_rng([o.seed, ("train", "val", "test").index(split)])
        protos = np.random.default_rng(o.seed).random((max(o.num_classes, 1), *o.step_shape), dtype=np.float32)
        y = rng.integers(0, max(o.num_classes, 1), n)
        lead = (n,) if o.static else (n, o.seq_len)
        base = protos[y] if o.static else protos[y][:, None]
        x = base + o.noise * rng.standard_normal((*lead, *o.step_shape), dtype=np.float32)
        out = {"x": np.clip(x, 0.0, 1.0).astype(np.float32)}
        if o.num_classes:
            out["y"] = y.astype(np.int64)
        return out


@hookimpl
def rladder_components():
    return [Component("dataset", "synthetic", SyntheticDataset, SyntheticOptions,
                      "Class prototypes plus per-step noise, any shape (for checks and smoke runs).")]

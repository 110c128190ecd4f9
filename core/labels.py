"""Labelled and unlabelled training data (semi-supervised runs; paper section 3.1, Table 2).

``[labels] count = 1000`` keeps the labels of a class-balanced subset of the training split
(for example 100 per class), chosen deterministically from ``labels.seed`` and saved with the
run as ``labels.json``; every other training sample is unlabelled. Batches then mix
``round(fraction * batch_size)`` labelled samples with unlabelled ones and carry ``label_mask``
(B,) bool: supervised tasks use the labelled samples only, unsupervised tasks use all.
``unlabeled = false`` trains on the labelled subset alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import numpy as np
import torch

from rladder.registry import ConfigError

from .files import write_text


@attrs.frozen
class LabelPlan:
    """What a loader needs: the labelled indices of the split and how to mix them into batches."""

    labeled: np.ndarray            # sorted indices into the training split
    fraction: float                # share of each batch that is labelled
    use_unlabeled: bool            # draw the rest of each batch from the unlabelled samples

    def labeled_per_batch(self, batch_size: int, world: int = 1) -> int:
        if not self.use_unlabeled:
            return batch_size
        n = round(self.fraction * batch_size)
        return n - n % world          # every process gets the same number of labelled samples


class IndexStream:
    """Endless reshuffled passes over ``indices`` (the loaders' training order; the labelled and
    unlabelled streams of a LabelPlan). Each pass is a permutation seeded by (seed, epoch); a
    request that does not fit in what is left of a pass starts the next one. The position is kept
    for exact resume."""

    def __init__(self, indices: torch.Tensor, seed: int):
        self.indices, self.seed = indices, seed
        self.epoch, self.position = 0, 0
        self._order: torch.Tensor | None = None

    def take(self, n: int) -> torch.Tensor:
        if n == 0:
            return self.indices[:0]
        if self.position + n > len(self.indices):      # drop the incomplete rest, start a new epoch
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        if self._order is None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._order = self.indices[torch.randperm(len(self.indices), generator=gen)]
        out = self._order[self.position:self.position + n]
        self.position += n
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load(self, state) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None


def balanced_subset(y: np.ndarray, count: int, num_classes: int, seed: int) -> np.ndarray:
    """``count`` indices, as equal per class as possible (lower classes take any remainder)."""
    if count > len(y):
        raise ConfigError(f"labels.count = {count} is larger than the {len(y)} training samples; "
                          f"lower labels.count or raise the dataset's training size")
    per_class = [count // num_classes + (1 if c < count % num_classes else 0) for c in range(num_classes)]
    rng = np.random.default_rng([seed, 7])
    chosen = []
    for c, k in enumerate(per_class):
        members = np.flatnonzero(y == c)
        if len(members) < k:
            raise ConfigError(f"labels.count = {count} needs {k} labelled samples of class {c}, but the training "
                              f"split has only {len(members)}; lower labels.count")
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def plan(config, dataset, needs_labels: bool, run_dir: Path | None = None, write: bool = True) -> LabelPlan | None:
    """The run's LabelPlan (None when every sample is labelled); saved to / checked against labels.json."""
    lab = config.labels
    if lab.count == 0:
        return None
    if needs_labels and lab.unlabeled and lab.fraction == 0:
        raise ConfigError("labels.fraction = 0 puts no labelled sample in any batch, but a supervised task "
                          "needs labels; set labels.fraction > 0 (for example 0.25)")
    if not dataset.spec.num_classes:
        raise ConfigError("labels.count > 0 needs a dataset with classes (balanced subsets are chosen per class)")
    y = dataset.arrays("train")["y"]
    labeled = balanced_subset(y, lab.count, dataset.spec.num_classes, lab.seed)
    if run_dir is not None:
        path = Path(run_dir) / "labels.json"
        if path.is_file():
            saved = np.asarray(json.loads(path.read_text())["labeled"], np.int64)
            if not np.array_equal(saved, labeled):
                raise ConfigError(f"{path} lists another labelled subset than labels.seed = {lab.seed} gives now; "
                                  f"the run cannot continue with different labels")
        elif write:
            write_text(path, json.dumps({"count": lab.count, "seed": lab.seed, "labeled": labeled.tolist()}) + "\n")
    return LabelPlan(labeled, lab.fraction, lab.unlabeled)

"""The in-memory loader: a split held as tensors, batched by index (no per-sample Python).

Training: an endless sequence of epochs, each a permutation drawn from a torch.Generator
seeded by (seed, epoch); the last incomplete batch of an epoch is dropped. With ``world``
processes, rank r takes rows [r*b, (r+1)*b) of every global batch (b = batch_size // world),
so the union over ranks is exactly the 1-process batch. Evaluation: one ordered pass; ranks
take interleaved batches (the last may be short).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch

from rladder.core import Dataset, Loader
from rladder.registry import Component, ConfigError, hookimpl


@attrs.frozen
class MemoryOptions:
    """The in-memory loader takes no options."""


class MemoryLoader(Loader):
    def __init__(self, options: MemoryOptions, *, dataset: Dataset, split: str, batch_size: int,
                 train: bool, seed: int = 0, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ConfigError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        self.dataset, self.train, self.seed = dataset, train, seed
        self.rank, self.world = rank, world
        self.global_batch, self.local_batch = batch_size, batch_size // world
        self.data = {k: torch.from_numpy(v) for k, v in dataset.arrays(split).items()}
        self.n = len(next(iter(self.data.values())))
        if train and self.n < batch_size:
            raise ConfigError(f"the {split!r} split has {self.n} samples, fewer than one batch of {batch_size}; "
                              f"lower train.batch_size or use more data")
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        if self.train:
            return self.n // self.global_batch
        return len(range(self.rank, -(-self.n // self.local_batch), self.world))

    def _take(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.dataset.to_batch({k: v[idx] for k, v in self.data.items()})

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.train:
            for start in range(self.rank * self.local_batch, self.n, self.world * self.local_batch):
                yield self._take(torch.arange(start, min(start + self.local_batch, self.n)))
            return
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=gen)
            per_epoch = self.n // self.global_batch
            while self.position < per_epoch:
                start = self.position * self.global_batch + self.rank * self.local_batch
                self.position += 1
                yield self._take(order[start:start + self.local_batch])
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


@hookimpl
def rladder_components():
    return [Component("loader", "memory", MemoryLoader, MemoryOptions,
                      "Whole split in memory, batched by index; seeded per-epoch shuffling.")]

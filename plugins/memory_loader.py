"""The in-memory loader: a split held as tensors, batched by index (no per-sample Python).

Training: an endless sequence of epochs, each a permutation drawn from a torch.Generator seeded
by (seed, stream, epoch); the last incomplete batch of an epoch is dropped. With a LabelPlan
(semi-supervised runs) there are two such streams, labelled and unlabelled, and every global
batch takes ``labeled_per_batch`` samples from the first and the rest from the second, with a
``label_mask``. With ``world`` processes, rank r takes its share of every global batch
(labelled and unlabelled alike), so the union over ranks is exactly the 1-process batch.
Evaluation: one ordered pass; ranks take interleaved batches (the last may be short).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs
import numpy as np
import torch

from rladder.core import Dataset, IndexStream, LabelPlan, Loader
from rladder.registry import Component, ConfigError, hookimpl, option


@attrs.frozen
class MemoryOptions:
    placement: Literal["cpu", "device"] = option(
        "cpu", help="Where the split is held: cpu, or the training device (a GPU: no copies, no data wait).")


class MemoryLoader(Loader):
    def __init__(self, options: MemoryOptions, *, dataset: Dataset, split: str, batch_size: int,
                 train: bool, seed: int = 0, rank: int = 0, world: int = 1, labels: LabelPlan | None = None,
                 data_config=None, device: torch.device | str = "cpu"):
        if batch_size % world:
            raise ConfigError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        self.dataset, self.train, self.rank, self.world = dataset, train, rank, world
        self.global_batch, self.local_batch = batch_size, batch_size // world
        where = torch.device(device) if options.placement == "device" else torch.device("cpu")
        self.data = {k: torch.from_numpy(np.ascontiguousarray(v)).to(where) for k, v in dataset.arrays(split).items()}
        self.n = len(next(iter(self.data.values())))
        self.labels = labels if train else None
        if self.labels is None:
            self.n_labeled = batch_size if train else 0
            self.streams = [IndexStream(torch.arange(self.n), seed)]
        else:
            labeled = torch.from_numpy(self.labels.labeled)
            self.n_labeled = self.labels.labeled_per_batch(batch_size, world)
            self.streams = [IndexStream(labeled, seed)]
            if self.labels.use_unlabeled:
                mask = torch.ones(self.n, dtype=torch.bool)
                mask[labeled] = False
                self.streams.append(IndexStream(torch.nonzero(mask).flatten(), seed + 1))
        if train:
            pool = len(self.streams[0].indices)
            if pool < self.n_labeled or (len(self.streams) > 1 and len(self.streams[1].indices) < batch_size - self.n_labeled):
                raise ConfigError(f"the {split!r} split is too small for a batch of {batch_size} "
                                  f"({pool} samples in the first stream); lower train.batch_size or use more data")

    def __len__(self) -> int:
        if self.train:   # batches until the largest stream starts a new epoch
            per_batch = self.global_batch - self.n_labeled if len(self.streams) > 1 else self.global_batch
            return len(self.streams[-1].indices) // per_batch
        return len(range(self.rank, -(-self.n // self.local_batch), self.world))

    def _take(self, idx: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        idx = idx.to(next(iter(self.data.values())).device)
        batch = self.dataset.to_batch({k: v[idx] for k, v in self.data.items()})
        if mask is not None:
            batch["label_mask"] = mask
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.train:
            for start in range(self.rank * self.local_batch, self.n, self.world * self.local_batch):
                yield self._take(torch.arange(start, min(start + self.local_batch, self.n)))
            return
        while True:
            if self.labels is None or len(self.streams) == 1:
                idx = self.streams[0].take(self.global_batch)
                idx = idx[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
                mask = None if self.labels is None else torch.ones(len(idx), dtype=torch.bool, device=idx.device)
                yield self._take(idx, mask)
                continue
            lab = self.streams[0].take(self.n_labeled)
            unl = self.streams[1].take(self.global_batch - self.n_labeled)
            nl, nu = self.n_labeled // self.world, (self.global_batch - self.n_labeled) // self.world
            idx = torch.cat([lab[self.rank * nl:(self.rank + 1) * nl], unl[self.rank * nu:(self.rank + 1) * nu]])
            mask = torch.cat([torch.ones(nl, dtype=torch.bool), torch.zeros(nu, dtype=torch.bool)]).to(idx.device)
            yield self._take(idx, mask)

    def state_dict(self) -> dict[str, Any]:
        return {"streams": [s.state() for s in self.streams]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for stream, s in zip(self.streams, state["streams"]):
            stream.load(s)


@hookimpl
def rladder_components():
    return [Component("loader", "memory", MemoryLoader, MemoryOptions,
                      "Whole split in memory, batched by index; seeded shuffling; labelled/unlabelled mixing.")]

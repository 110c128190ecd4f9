"""The chunked loader: whole sequences of different lengths cut into chunks, for truncated
back-propagation through time (any dataset with a ``sequence_layout``, e.g. piano rolls).

A batch has ``batch_size`` slots in a fixed order. A slot plays one sequence, ``chunk`` steps per
batch; the next batch continues it (``carry`` True: the trainer and the evaluation carry the model
state over) until it ends, then the slot starts the next sequence (``carry`` False). A chunk never
holds steps of two sequences: steps past a sequence's end are padding, marked False in
``step_mask`` by the dataset's ``to_batch``.

Training: sequences come from an endless reshuffled stream (seeded by ``seed`` and the epoch).
With ``world`` processes every process keeps the books of all slots of the global batch and yields
its own share, so the data do not depend on the number of processes. ``state_dict`` holds the
stream position and every slot's sequence and position (exact resume).

Evaluation: one pass in which every step of every sequence of the split is in exactly one batch:
sequences longest first (fewer idle slots at the end); a slot whose sequence ended takes the next
one, and idles (every step masked) when none is left, until the last sequence ends. With ``world``
processes, process r evaluates sequences r, r + world, ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import numpy as np
import torch

from rladder.core import Dataset, IndexStream, LabelPlan, Loader
from rladder.registry import Component, ConfigError, hookimpl, option, positive


@attrs.frozen
class ChunkedOptions:
    chunk: int = option(64, help="Steps per chunk: how far back the gradient flows (truncated BPTT).",
                        validator=positive)


class ChunkedLoader(Loader):
    def __init__(self, options: ChunkedOptions, *, dataset: Dataset, split: str, batch_size: int, train: bool,
                 seed: int = 0, rank: int = 0, world: int = 1, labels: LabelPlan | None = None, data_config=None,
                 device: torch.device | str = "cpu"):
        layout = dataset.sequence_layout()
        if layout is None:
            raise ConfigError(f"loader 'chunked' cuts sequences of different lengths into chunks, but dataset "
                              f"{type(dataset).__name__} has samples of one length; use loader 'memory'")
        if labels is not None:
            raise ConfigError("loader 'chunked' does not mix labelled and unlabelled samples; use loader 'memory' "
                              "for semi-supervised runs")
        if batch_size % world:
            raise ConfigError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        self.dataset, self.train, self.chunk = dataset, train, options.chunk
        self.layout = layout
        self.global_batch, self.local_batch, self.rank = batch_size, batch_size // world, rank
        arrays = dataset.arrays(split)
        self.lengths = torch.from_numpy(np.asarray(arrays[layout.length_key], np.int64))
        pad = self.chunk + layout.lookahead
        self.time = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])) for k in layout.time_keys}
        self.time = {k: torch.cat([v, v.new_zeros((len(v), pad, *v.shape[2:]))], 1) for k, v in self.time.items()}
        self.rest = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()
                     if k not in layout.time_keys and k != layout.length_key}
        present = torch.nonzero(self.lengths > 0).flatten()
        if not len(present):
            raise ConfigError(f"the {split!r} split has no sequence with a step")
        if train:
            self.stream = IndexStream(present, seed)
            self.slots = torch.full((batch_size,), -1, dtype=torch.long)
            self.pos = torch.zeros(batch_size, dtype=torch.long)
        else:
            self.schedule = self._plan([int(i) for i in present if int(i) % world == rank])

    def _plan(self, mine: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Evaluation batches: (sequence per slot (-1: idle), start step per slot, carry per slot)."""
        queue = iter(sorted(mine, key=lambda i: -int(self.lengths[i])))
        slots, pos, plan = [-1] * self.local_batch, [0] * self.local_batch, []
        while True:
            carry = []
            for s in range(self.local_batch):
                going = slots[s] >= 0 and pos[s] < self.lengths[slots[s]]
                if not going:
                    slots[s], pos[s] = next(queue, -1), 0
                carry.append(going)
            if all(i < 0 for i in slots):
                return plan
            plan.append((torch.tensor(slots), torch.tensor(pos), torch.tensor(carry)))
            pos = [p + self.chunk for p in pos]

    def __len__(self) -> int:
        if self.train:      # chunks in one pass over the training sequences, per global batch
            chunks = int(((self.lengths + self.chunk - 1) // self.chunk).sum())
            return max(1, chunks // self.global_batch)
        return len(self.schedule)

    def window(self, seq: torch.Tensor, start: torch.Tensor, carry: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model batch of steps [start, start + chunk) of sequence ``seq`` in every slot (-1: idle)."""
        active = seq >= 0
        idx = seq.clamp(min=0)
        steps = start[:, None] + torch.arange(self.chunk + self.layout.lookahead)
        stored = {k: v[idx[:, None], steps] * active.view(-1, *[1] * (v.dim() - 1)).to(v.dtype)
                  for k, v in self.time.items()}
        stored.update({k: v[idx] for k, v in self.rest.items()})
        left = (self.lengths[idx] - start).clamp(0, self.chunk) * active
        stored[self.layout.length_key] = left
        batch = self.dataset.to_batch(stored)
        batch["carry"] = carry
        return batch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.train:
            for seq, start, carry in self.schedule:
                yield self.window(seq, start, carry)
            return
        mine = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        while True:
            carry = torch.ones(self.global_batch, dtype=torch.bool)
            for s in range(self.global_batch):
                if self.slots[s] < 0 or self.pos[s] >= self.lengths[self.slots[s]]:
                    self.slots[s], self.pos[s], carry[s] = self.stream.take(1)[0], 0, False
            seq, start = self.slots[mine].clone(), self.pos[mine].clone()
            self.pos += self.chunk
            yield self.window(seq, start, carry[mine])

    def state_dict(self) -> dict[str, Any]:
        if not self.train:
            return {}
        return {"stream": self.stream.state(), "slots": self.slots.tolist(), "pos": self.pos.tolist()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.train and state:
            if len(state["slots"]) != self.global_batch:
                raise ConfigError(f"the saved loader position has {len(state['slots'])} slots, this run's batch "
                                  f"{self.global_batch}; resume with the same train.batch_size")
            self.stream.load(state["stream"])
            self.slots = torch.tensor(state["slots"], dtype=torch.long)
            self.pos = torch.tensor(state["pos"], dtype=torch.long)


@hookimpl
def rladder_components():
    return [Component("loader", "chunked", ChunkedLoader, ChunkedOptions,
                      "Sequences of different lengths in chunks, in fixed slots with carried state (truncated BPTT).")]

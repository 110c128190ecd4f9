"""Sharded loading with webdataset: shards built by `rladder data build`, local or remote.

``shards`` is a folder, or any location webdataset can open (``https://host/omm``,
``pipe:aws s3 cp s3://bucket/omm/{} -``: ``{}`` stands for the file name), holding
``manifest.json`` and the ``<split>-NNNNNN.tar`` files.

Training, ``mode = "resampled"`` (the default, for multi-process training): every process and
worker draws shards at random with replacement (seeded by seed, rank, worker and epoch), mixes
samples in a shuffle buffer, and makes exactly ``steps_per_epoch`` batches per epoch, so every
process runs the same number of steps and no collective waits for a process that ran dry.
The order is a function of the seeds alone, so a resumed run re-reads (and drops) the batches
its epoch had already used and continues exactly where it stopped.
``mode = "ordered"``: every process reads all shards in order and takes its slice of each
global batch, exactly like the in-memory loader (no shuffling); the data order does not depend
on the number of processes (for equivalence checks and debugging; single worker).
Evaluation: one ordered pass, shards split across processes and workers.

Semi-supervised runs (a LabelPlan, ``[labels] count > 0``): the labelled subset is small, so it
is read from the training shards once, when the loader starts, and held in memory; each global
batch takes its labelled share from it exactly as the in-memory loader does (same seeded order),
and the rest from the shard stream, which skips the labelled samples. Batches carry
``label_mask``. ``labels.unlabeled = false`` trains on the labelled subset alone.

A truncated or corrupt shard raises an error naming it; ``on_error = "warn"`` warns (once per
shard and process) and skips the rest of that shard instead. Batches are decoded from ``.npy`` members (no pickles) and
turned into model batches by the dataset's ``to_batch``, so they equal in-memory batches.
"""

from __future__ import annotations

import io
import random
import re
import sys
import tarfile
from collections.abc import Iterator, Mapping
from itertools import islice
from typing import Any, Literal

import attrs
import numpy as np
import torch
import webdataset as wds

from rladder.core import Dataset, IndexStream, LabelPlan, Loader, read_manifest, shard_location
from rladder.registry import Component, ConfigError, DataError, hookimpl, non_negative, option


@attrs.frozen
class WebDatasetOptions:
    shards: str = option(help="Folder or URL of the shards (with manifest.json); '{}' stands for a file name.")
    mode: Literal["resampled", "ordered"] = option("resampled", help="Training order (see `rladder describe`).")
    shuffle_buffer: int = option(1000, help="Samples in the shuffle buffer (resampled mode).", validator=non_negative)
    workers: int = option(0, help="DataLoader worker processes per training process.", validator=non_negative)
    steps_per_epoch: int = option(0, help="Batches per epoch and process (0 = samples / global batch).",
                                  validator=non_negative)
    on_error: Literal["raise", "warn"] = option("raise", help="A bad shard: raise an error, or warn and skip it.")


def _decode(sample: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {k[:-4]: np.load(io.BytesIO(v), allow_pickle=False) for k, v in sample.items() if k.endswith(".npy")}


class WebDatasetLoader(Loader):
    def __init__(self, options: WebDatasetOptions, *, dataset: Dataset, split: str, batch_size: int, train: bool,
                 seed: int = 0, rank: int = 0, world: int = 1, labels: LabelPlan | None = None,
                 data_config=None, device: torch.device | str = "cpu"):
        o = self.o = options
        if batch_size % world:
            raise ConfigError(f"train.batch_size = {batch_size} is not divisible by the {world} processes")
        manifest = read_manifest(o.shards)
        if data_config is not None and manifest["options"] != dict(data_config):
            raise ConfigError(f"loader.shards = {o.shards!r} holds {manifest['dataset']} built with other options "
                              f"than the config's [data] section; rebuild the shards or copy the manifest's options "
                              f"({manifest['options']}) into [data]")
        if split not in manifest["splits"]:
            raise ConfigError(f"{o.shards} has no {split!r} split (it has {', '.join(manifest['splits'])})")
        info = manifest["splits"][split]
        self.keys = [f"{k}.npy" for k in manifest["keys"]]
        self.expected = {s["name"].removesuffix(".tar"): s["samples"] for s in info["shards"]}
        self.urls = [shard_location(o.shards, s["name"]) for s in info["shards"]]
        self.samples = info["samples"]
        self.dataset, self.train, self.seed, self.rank, self.world = dataset, train, seed, rank, world
        self.global_batch, self.local_batch = batch_size, batch_size // world
        self.pin_memory = torch.device(device).type == "cuda"
        if train and o.mode == "ordered" and o.workers > 1:
            raise ConfigError("loader.mode = 'ordered' reads shards in one order; use loader.workers = 0 or 1")
        readers = world * max(1, o.workers)
        if len(self.urls) < readers and (not train or o.mode == "resampled"):
            raise ConfigError(
                f"{o.shards} has {len(self.urls)} {split} shard(s) for {world} process(es) x {max(1, o.workers)} "
                f"worker(s) = {readers} readers; each reader needs at least one shard. Rebuild with a smaller "
                f"--shard-size (at most {max(1, self.samples // readers)}) or use fewer workers or processes.")
        self.labels = labels if train else None
        self.stream_batch = batch_size                  # global batch drawn from the shard stream
        self.skip: set[int] = set()                     # sample indices the stream leaves out
        if self.labels is not None:
            self.n_labeled = self.labels.labeled_per_batch(batch_size, world)
            self.stream_batch = batch_size - self.n_labeled if self.labels.use_unlabeled else 0
            self.skip = {int(i) for i in self.labels.labeled}
            self.labeled = self._read_labeled(self.labels.labeled)
            self.lab_stream = IndexStream(torch.arange(len(self.labels.labeled)), seed)
        pool = self.samples - (len(self.labels.labeled) if self.labels is not None else 0)
        if self.labels is not None and len(self.labels.labeled) < (self.n_labeled if self.stream_batch else batch_size):
            raise ConfigError(f"the {len(self.labels.labeled)} labelled samples cannot fill the labelled share of a "
                              f"batch of {batch_size}; raise labels.count or lower train.batch_size")
        if train and o.mode == "ordered" and 0 < pool < self.stream_batch:
            raise ConfigError(f"the {split!r} shards hold {pool} samples for batches of {self.stream_batch}; "
                              f"lower train.batch_size or build more samples")
        if self.stream_batch:
            self.per_epoch = o.steps_per_epoch or max(1, pool // self.stream_batch)
        else:
            self.per_epoch = o.steps_per_epoch or max(1, len(self.labels.labeled) // batch_size)
        self.epoch, self.position = 0, 0
        self.shard: str | None = None                   # the shard being read (for error messages)
        self.reported: set[str | None] = set()          # bad shards already warned about (on_error = "warn")

    def __len__(self) -> int:
        if self.train:
            return self.per_epoch
        return len(range(self.rank, -(-self.samples // self.local_batch), self.world))

    # ------------------------------------------------------------------ the labelled subset
    @staticmethod
    def _index(sample: Mapping[str, Any]) -> int:
        return int(str(sample["__key__"]).rsplit("-", 1)[-1])        # keys are <split>-<index>

    def _read_labeled(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        """One pass over the training shards, keeping (decoded) the samples of the labelled subset."""
        wanted = {int(i): n for n, i in enumerate(indices)}
        found: dict[int, dict[str, np.ndarray]] = {}
        for sample in self._in_order(lambda s: self._index(s) in wanted):
            found[wanted[self._index(sample)]] = sample
        if len(found) != len(wanted):
            missing = sorted(int(i) for n, i in enumerate(indices) if n not in found)
            raise DataError(f"{self.o.shards} lacks {len(missing)} of the {len(wanted)} labelled training samples "
                            f"(indices {missing[:5]}{' ...' if len(missing) > 5 else ''}); the shards hold fewer "
                            f"training samples than the dataset the labels were chosen from: rebuild the shards")
        return self._stack([found[n] for n in range(len(indices))])

    def _labeled_batch(self, n: int) -> dict[str, torch.Tensor]:
        """This process's share of ``n`` labelled samples of the global batch."""
        idx = self.lab_stream.take(n)
        share = n // self.world
        idx = idx[self.rank * share:(self.rank + 1) * share]
        return {k: v[idx] for k, v in self.labeled.items()}

    def _streamed(self, sample: Mapping[str, Any]) -> bool:
        """Whether the shard stream passes ``sample`` on (not when it belongs to the labelled subset)."""
        return not self.skip or self._index(sample) not in self.skip

    # ------------------------------------------------------------------ pipelines
    def _check(self, src):
        """Pass complete samples on; a shard with an incomplete sample or too few samples is bad."""
        url, key, count, skipping = None, "", 0, False
        for sample in src:
            # a new shard starts when the URL changes or the keys start again (the same shard drawn twice)
            if sample.get("__url__") != url or sample.get("__key__", "") <= key:
                if url is not None and not skipping:
                    self._count(url, count)
                url, count, skipping = sample.get("__url__"), 0, False
            key = sample.get("__key__", "")
            if skipping:
                continue
            missing = [k for k in self.keys if k not in sample]
            if missing:
                skipping = self._bad(url, f"sample {sample.get('__key__')} lacks {', '.join(missing)}")
                continue
            count += 1
            yield sample
        if url is not None and not skipping:
            self._count(url, count)

    def _count(self, url: str, count: int) -> None:
        name = str(url).rsplit("/", 1)[-1].removesuffix(".tar")
        expected = self.expected.get(name)
        if expected is not None and count != expected:
            self._bad(url, f"{count} samples, the manifest says {expected}")

    def _bad(self, url, problem: str, state: str = "is truncated or corrupt") -> bool:
        """Raise (or, with on_error = 'warn', warn once per shard and process and return True: skip the rest
        of the shard)."""
        where = f"shard {url}" if url else "a shard"
        if self.o.on_error == "warn":
            if url not in self.reported:
                self.reported.add(url)
                print(f"warning: {where} {state} ({problem}); skipping the rest of it", file=sys.stderr)
            return True
        raise DataError(f"{where} {state} ({problem}); run `rladder data verify` on the shard folder, or set "
                        f"loader.on_error = 'warn' to skip bad shards")

    def _reading(self, src):
        """Pass the shard list on, noting which shard webdataset opens (its error handler is not told)."""
        for shard in src:
            self.shard = shard.get("url")
            yield shard

    def _handler(self, exn: Exception) -> bool:
        """webdataset's handler for a shard it cannot read (a broken tar, a failed download). webdataset
        appends the stream and URL to the exception's args, and calls the handler again for the same
        failure one stage up: the problem is told in plain words, and our own error passes through as it is."""
        if isinstance(exn, DataError):
            exn.args = exn.args[:1]
            raise exn
        if isinstance(exn, OSError) and exn.strerror:
            text = exn.strerror
        else:
            text = str(exn.args[0]) if exn.args else ""
            head, at, tail = text.rpartition(" @ ")           # webdataset appends " @ <the stream's repr>"
            text = head if at and tail.startswith("<") else text
            status = re.search(r": exit (-?\d+) \(read\)", text)  # a pipe: URL whose command failed
            text = f"its command exited with status {status[1]}" if status else text
        state = "is truncated or corrupt" if isinstance(exn, tarfile.TarError | EOFError) else "cannot be read"
        return self._bad(self.shard, f"{type(exn).__name__}: {text}" if text else type(exn).__name__, state)

    def _worker(self) -> tuple[int, int]:
        info = torch.utils.data.get_worker_info()
        return (info.id, info.num_workers) if info else (0, 1)

    def _split(self, src):
        wid, nw = self._worker()
        yield from islice(islice(src, self.rank, None, self.world), wid, None, nw)

    def _in_order(self, keep) -> wds.DataPipeline:
        """The decoded samples ``keep`` accepts, from every shard in order (one reader)."""
        return wds.DataPipeline(wds.SimpleShardList(self.urls), self._reading,
                                wds.tarfile_to_samples(handler=self._handler), self._check, wds.select(keep),
                                wds.map(_decode))

    def _pipeline(self) -> wds.DataPipeline:
        collate = self._stack
        if not self.train:
            return wds.DataPipeline(wds.SimpleShardList(self.urls), self._split, self._reading,
                                    wds.tarfile_to_samples(handler=self._handler), self._check, wds.map(_decode),
                                    wds.batched(self.local_batch, collation_fn=collate, partial=True))
        rank = self.rank

        def worker_seed():
            return rank * 1000 + self._worker()[0]

        shards = wds.ResampledShards(self.urls, seed=self.seed * 1_000_003 + self.epoch, worker_seed=worker_seed,
                                     deterministic=True)
        return wds.DataPipeline(shards, self._reading, wds.tarfile_to_samples(handler=self._handler), self._check,
                                wds.select(self._streamed),
                                wds.shuffle(self.o.shuffle_buffer, initial=min(100, self.o.shuffle_buffer),
                                            rng=random.Random(self.seed * 7 + rank * 1000 + self.epoch)),
                                wds.map(_decode),
                                wds.batched(self.stream_batch // self.world, collation_fn=collate, partial=False))

    @staticmethod
    def _stack(samples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """The stored arrays of ``samples``, stacked (the dataset's ``to_batch`` makes the model batch)."""
        return {k: torch.from_numpy(np.stack([s[k] for s in samples])) for k in samples[0] if not k.startswith("__")}

    def _loader(self, pipeline, workers: int):
        return torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=workers)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if not self.train:
            for stored in self._loader(self._pipeline(), self.o.workers):
                yield self._batch(stored)
        elif self.labels is None:
            for stored in self._stream():
                yield self._batch(stored)
        elif not self.stream_batch:                         # the labelled subset alone
            while True:
                yield self._mixed(self._labeled_batch(self.global_batch), None)
        else:
            for stored in self._stream():
                yield self._mixed(self._labeled_batch(self.n_labeled), stored)

    def _mixed(self, labeled: dict[str, torch.Tensor], unlabeled: dict[str, torch.Tensor] | None):
        stored = labeled if unlabeled is None else {k: torch.cat([labeled[k], unlabeled[k]]) for k in labeled}
        mask = torch.zeros(len(next(iter(stored.values()))), dtype=torch.bool)
        mask[:len(next(iter(labeled.values())))] = True
        return self._batch(stored, mask)

    def _batch(self, stored: dict[str, torch.Tensor], mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The model batch (pinned for a GPU run, so the copy to the device can be non-blocking)."""
        batch = self.dataset.to_batch(stored)
        if mask is not None:
            batch["label_mask"] = mask
        return {k: v.pin_memory() for k, v in batch.items()} if self.pin_memory else batch

    def _stream(self) -> Iterator[dict[str, torch.Tensor]]:
        """This process's share of every global batch drawn from the shards (endless)."""
        if self.o.mode == "ordered":
            yield from self._ordered()
            return
        while True:
            workers = self.o.workers
            per_worker = -(-self.per_epoch // max(1, workers))
            pipeline = self._pipeline().with_epoch(nbatches=per_worker)
            done = self.position            # > 0 after a resume: this epoch's first batches were used
            for n, batch in enumerate(islice(self._loader(pipeline, workers), self.per_epoch)):
                if n >= done:               # the epoch's order is seeded, so skipping them resumes exactly
                    self.position = n + 1
                    yield batch
            self.epoch, self.position = self.epoch + 1, 0

    def _ordered(self) -> Iterator[dict[str, torch.Tensor]]:
        share = self.stream_batch // self.world
        lo, hi = self.rank * share, (self.rank + 1) * share
        while True:
            samples = self._in_order(self._streamed)
            buffer: list[dict[str, np.ndarray]] = []
            done = 0
            for sample in samples:
                buffer.append(sample)
                if len(buffer) == self.stream_batch:
                    if done >= self.position:
                        self.position += 1
                        yield self._stack(buffer[lo:hi])
                    done += 1
                    buffer = []
                    if done >= self.per_epoch:
                        break
            self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        state = {"epoch": self.epoch, "position": self.position}
        if self.labels is not None:
            state["labeled"] = self.lab_stream.state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.labels is not None:
            self.lab_stream.load(state["labeled"])


@hookimpl
def rladder_components():
    return [Component("loader", "webdataset", WebDatasetLoader, WebDatasetOptions,
                      "WebDataset shards (local or URL): resampled for multi-process training, or ordered; labelled subsets.")]

#!/usr/bin/env python
"""Benchmark: reading Occluded Moving MNIST from WebDataset shards against what training consumes.

Builds (or reuses) shards of the training split, then measures batches of 32 per second from
  * the webdataset loader (resampled mode, shuffle buffer 1000) with 0, 1 and 2 worker processes,
    and semi-supervised (1,000 labelled samples held in memory, the rest streamed),
  * the in-memory loader, for reference,
and the training consumption rate of the RLadder (cpu preset and paper size, batch 32), all in
one process with the same threads. Reading is fast enough when it exceeds consumption.

    python tools/bench_shards.py --threads 2 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_omm import publish, train_benchmark, wait_quiet  # noqa: E402


def read_rate(loader, batches: int) -> float:
    it = iter(loader)
    next(it)                                                    # start-up (workers, first shard) not timed
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        n += len(next(it)["x"])
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--samples", type=int, default=10000, help="training sequences in the shards")
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--batches", type=int, default=150)
    ap.add_argument("--shards", type=Path, help="reuse this shard folder (built if missing)")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from rladder.core.labels import LabelPlan, balanced_subset
    from rladder.core.shards import build
    from rladder.plugins.memory_loader import MemoryLoader, MemoryOptions
    from rladder.plugins.wds_loader import WebDatasetLoader, WebDatasetOptions
    from rladder.registry import get_registry

    reg = get_registry()
    table = reg.resolved_table("dataset", {"name": "occluded_mnist", "train": args.samples, "val": 100, "test": 100})
    dataset = reg.build("dataset", table)
    tmp = tempfile.TemporaryDirectory()
    folder = args.shards or Path(tmp.name) / "omm"
    if not (folder / "manifest.json").is_file():
        t0 = time.perf_counter()
        build(table, folder, ["train"], args.shard_size, log=lambda m: None)
        build_s = time.perf_counter() - t0
    else:
        build_s = float("nan")
    size = sum(p.stat().st_size for p in folder.glob("train-*.tar"))
    rows = []
    for workers in (0, 1, 2):
        wait_quiet()
        ld = WebDatasetLoader(WebDatasetOptions(shards=str(folder), workers=workers), dataset=dataset,
                              split="train", batch_size=32, train=True, data_config=table)
        rows.append((f"webdataset, {workers} worker(s)", read_rate(ld, args.batches)))
    # semi-supervised: 1,000 labelled samples read from the shards at start, the rest streamed
    labels = LabelPlan(balanced_subset(dataset.arrays("train")["y"], min(1000, args.samples // 4), 10, 0), 0.25, True)
    wait_quiet()
    t0 = time.perf_counter()
    ld = WebDatasetLoader(WebDatasetOptions(shards=str(folder), workers=2), dataset=dataset, split="train",
                          batch_size=32, train=True, data_config=table, labels=labels)
    start_s = time.perf_counter() - t0
    rows.append((f"webdataset, 2 worker(s), {len(labels.labeled):,} labelled + streamed rest", read_rate(ld, args.batches)))
    wait_quiet()
    mem = MemoryLoader(MemoryOptions(), dataset=dataset, split="train", batch_size=32, train=True)
    rows.append(("in memory", read_rate(mem, args.batches)))
    consumption = {}
    for label, opts in (("cpu preset (8-16-32)", {"channels": [8, 16, 32], "top": 64}), ("paper size (32-64-128)", {})):
        wait_quiet()
        consumption[label] = train_benchmark(opts, 8, args.threads)["samples_per_s"]
    lines = [f"{args.samples} training sequences in {len(list(folder.glob('train-*.tar')))} shards of {args.shard_size} "
             f"({size / 1e6:.0f} MB; built in {build_s:.1f} s), batch 32, {args.threads} threads, shuffle buffer 1000.",
             "", "| reader | samples/s |", "|---|---|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in rows]
    lines += ["", "| training consumes (RLadder, batch 32, CPU) | samples/s |", "|---|---|"]
    lines += [f"| {name} | {rate:.0f} |" for name, rate in consumption.items()]
    slowest = min(r for _, r in rows[:4])
    lines += ["", f"The slowest shard reader delivers {slowest / max(consumption.values()):.0f}x what the fastest "
                  f"training here consumes. The semi-supervised loader spends {start_s:.1f} s at start reading "
                  f"its {len(labels.labeled):,} labelled samples from the shards (one pass over them)."]
    publish("\n".join(lines), "shards", args.write)


if __name__ == "__main__":
    main()

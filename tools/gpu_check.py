#!/usr/bin/env python
"""GPU path check (one GPU, under 5 minutes): train the paper-size Occluded Moving MNIST RLadder.

Variants, each a short training run through the real trainer, samples/s measured after warm-up:
  fp32 eager; bf16 autocast; bf16 + channels_last; bf16 + torch.compile (if --compile).
Data: the in-memory loader with the split placed on the GPU (no copies), and the webdataset
loader with pinned memory, non-blocking copies and 4 workers (data wait reported).
Checks that losses are finite and that bf16 and fp32 agree at the first step.

    python tools/gpu_check.py --write docs/benchmarks.md          # on a machine with a GPU
    python tools/gpu_check.py --device cpu --tiny --steps 3 --batch 8    # a dry run of the code path
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_omm import publish  # noqa: E402


def data_table(batch: int, tiny: bool) -> dict:
    if tiny:
        return {"name": "occluded_mnist", "train": batch * 4, "val": batch, "test": batch}
    return {"name": "occluded_mnist", "train": max(4096, batch * 8), "val": 256, "test": 256}


def run(device: str, steps: int, batch: int, train_extra: dict, loader: dict, tiny: bool = False):
    from rladder.core.config import resolve
    from rladder.core.train import Trainer

    model = {"name": "omm_rladder", **({"channels": [4, 4, 8], "top": 8} if tiny else {})}
    raw = {"data": data_table(batch, tiny), "model": model, "loader": loader,
           "tasks": {"predict": {"name": "next_step"}, "classify": {"name": "classify", "every_step": True}},
           "train": {"steps": steps, "batch_size": batch, "device": device, "log_every": max(1, steps // 3),
                     "eval_every": 10**6, "checkpoint_every": 10**6, **train_extra}}
    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(resolve(raw), Path(tmp) / "run", progress=False, log=lambda m: None)
        t0 = time.perf_counter()
        t.fit()
        wall = time.perf_counter() - t0
        records = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r["split"] == "train"]
    timed = records[1:] or records                           # the first interval includes warm-up / compile
    per_step = sum(r["seconds_per_step"] for r in timed) / len(timed)
    return {"samples_per_s": batch / per_step, "data_wait": sum(r["data_wait"] for r in timed) / len(timed),
            "loss": records[-1]["loss"], "wall": wall, "first_interval_s": records[0]["seconds_per_step"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to start)")
    ap.add_argument("--tiny", action="store_true", help="tiny widths and data: check the code path, not the speed")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs a GPU (use --device cpu for a dry run)")
    from rladder.core.shards import build

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (dry run)"
    on_device = {"name": "memory", "placement": "device"}
    variants = {"fp32, eager": {"precision": "fp32"}, "bf16 autocast": {"precision": "bf16"},
                "bf16 + channels_last": {"precision": "bf16", "channels_last": True}}
    if args.compile:
        variants["bf16 + torch.compile"] = {"precision": "bf16", "compile": True}
    results = {name: run(args.device, args.steps, args.batch, extra, on_device, args.tiny)
               for name, extra in variants.items()}
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "omm"
        table = data_table(args.batch, args.tiny)
        build(table, shards, ["train", "val"], max(1, table["val"] // 4), log=lambda m: None)   # >= 4 shards
        results["bf16, webdataset (4 workers, pinned)"] = run(
            args.device, args.steps, args.batch, {"precision": "bf16"},
            {"name": "webdataset", "shards": str(shards), "workers": 4}, args.tiny)
    for name, r in results.items():
        if not r["loss"] == r["loss"]:
            sys.exit(f"{name}: the loss is NaN")
    size = "tiny RLadder (4-4-8, top 8)" if args.tiny else "paper-size RLadder (32-64-128, top 128)"
    lines = [f"Device: {gpu}, torch {torch.__version__}; {size}, batch {args.batch}, "
             f"{args.steps} steps per variant.", "",
             "| variant | samples/s | data wait | first interval s/step | loss at the end |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['samples_per_s']:.0f} | {100 * r['data_wait']:.1f} % | {r['first_interval_s']:.2f} "
              f"| {r['loss']:.3f} |" for n, r in results.items()]
    publish("\n".join(lines), "gpu", args.write)


if __name__ == "__main__":
    main()

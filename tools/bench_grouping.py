#!/usr/bin/env python
"""Benchmark: the grouping data generators (textured MNIST, moving MNIST) and AMI scoring.

Measures, with real MNIST digits, in one process:
  * textured MNIST: images/s of ``TexturedMNIST.arrays`` (thickening, two rotated and scaled
    texture crops per image, composition), for the 50k training split;
  * moving MNIST: sequences/s of generating the stored form (digits and trajectories) and of
    drawing batches from it (``to_batch``: frames and segmentations), at the paper's 64x64 x 20
    frames and at the cpu budget's 32x32 x 10 frames;
  * AMI per sample: the batched implementation against one scikit-learn call per sample.
Each figure is the best of 3 runs; "foreign cores" is the CPU time other processes used meanwhile.

    python tools/bench_grouping.py --threads 1 --write docs/table4.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_omm import foreign_cores, publish


def best_rate(fn, count: int, reps: int = 3) -> tuple[float, float]:
    best, foreign = 0.0, 0.0
    for _ in range(reps):
        _, dt, f = foreign_cores(fn)
        if count / dt > best:
            best, foreign = count / dt, f
    return best, foreign


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from rladder.plugins import grouping_tasks as GT
    from rladder.plugins.mnist import load_mnist, split_arrays
    from rladder.registry import get_registry

    reg = get_registry()

    def build(table):
        return reg.build("dataset", reg.resolved_table("dataset", table))

    images, _ = split_arrays(load_mnist(build({"name": "mnist"}).options), "train")
    rows = []
    tex = build({"name": "textured_mnist", "train": 50000})
    assert tex.bank.shape[0] == 20                                # the texture bank is made once per dataset

    def textured():
        tex._generated.clear()
        tex.arrays("train")
    rate, f = best_rate(textured, 50000)
    rows.append(("textured MNIST, 50k training images 28x28 (generate)", "images/s", rate, f))
    for size, digit, frames in ((64, 28, 20), (32, 14, 10)):
        mm = build({"name": "moving_mnist", "frames": frames, "size": size, "digit_size": digit})
        rate, f = best_rate(lambda mm=mm: mm.generate(images, np.random.default_rng(0), 10000), 10000)
        rows.append((f"moving MNIST {size}x{size}, {frames} frames (generate the stored form)", "sequences/s", rate, f))
        stored = {k: torch.from_numpy(v) for k, v in mm.generate(images, np.random.default_rng(0), 256).items()}
        rate, f = best_rate(lambda mm=mm, stored=stored: mm.to_batch(stored), 256)
        rows.append((f"moving MNIST {size}x{size}, {frames} frames (draw frames and masks, batches of 256)",
                     "sequences/s", rate, f))
    batch = tex.to_batch({k: torch.from_numpy(v[:2000]) for k, v in tex.arrays("train").items()})
    logits = torch.randn(2000, 3, 1, 28, 28)
    rate, f = best_rate(lambda: GT.ami_scores(batch["masks"], logits), 2000)
    rows.append(("AMI, batched (28x28, K = 3)", "samples/s", rate, f))
    rate, f = best_rate(lambda: GT.ami_scores(batch["masks"][:200], logits[:200], backend="sklearn"), 200, reps=1)
    rows.append(("AMI, one scikit-learn call per sample", "samples/s", rate, f))
    lines = [f"torch {torch.__version__}, {args.threads} thread(s), real MNIST digits; best of 3.", "",
             "| what | rate | foreign cores |", "|---|---|---|"]
    lines += [f"| {name} | {rate:,.0f} {unit} | {f:.2f} |" for name, unit, rate, f in rows]
    publish("\n".join(lines), "grouping-data", args.write)


if __name__ == "__main__":
    main()

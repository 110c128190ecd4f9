#!/usr/bin/env python
"""Benchmark: Occluded Moving MNIST RLadder training on CPU against the machine's conv throughput.

Measures, in one process and with the same thread count:
  * the machine's fp32 convolution throughput: forward + backward of 3x3 convs (batch 32) at a few
    sizes; the best is the reference ("conv peak");
  * RLadder training (Adam, batch 32, real data through the memory loader): samples/s, achieved
    GFLOP/s (FLOPs of one forward + backward from torch.utils.flop_counter, divided by the time of
    a full training step), the share of step time spent waiting for data;
  * the Occluded Moving MNIST generator: sequences/s (real MNIST digits, 6 frames each).
Before every measurement it waits for the machine to be quiet and records the CPU time other
processes used meanwhile ("foreign cores"), because a busy second core slows a 2-thread run 6-20x.

    python tools/bench_omm.py --threads 2 --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def cpu_busy() -> tuple[float, float]:
    """(total busy jiffies of the machine, jiffies of this process)."""
    fields = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
    vals = list(map(int, fields))
    busy = sum(vals) - vals[3] - vals[4]
    mine = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return busy, int(mine[11]) + int(mine[12])


def foreign_cores(fn):
    """Run fn(); return (result, seconds, average number of cores other processes used meanwhile)."""
    b0, m0 = cpu_busy()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    b1, m1 = cpu_busy()
    hz = os.sysconf("SC_CLK_TCK")
    return out, dt, max(0.0, ((b1 - b0) - (m1 - m0)) / hz / dt)


def wait_quiet(limit=0.15, timeout=120):
    t_end = time.time() + timeout
    while time.time() < t_end:
        _, _, foreign = foreign_cores(lambda: time.sleep(1.0))
        if foreign < limit:
            return foreign
    return foreign


def conv_peak(reps=5):
    results = {}
    for cin, cout, hw in ((128, 128, 32), (160, 256, 16), (320, 512, 8), (65, 128, 32)):
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        x = torch.rand(32, cin, hw, hw, requires_grad=True)
        flops = 3 * 2 * cin * cout * 9 * hw * hw * 32          # forward + input grad + weight grad
        for _ in range(2):
            conv(x).sum().backward()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            conv(x).sum().backward()
            times.append(time.perf_counter() - t)
        results[f"{cin}->{cout} @{hw}x{hw}"] = flops / statistics.median(times) / 1e9
    return results


def train_benchmark(model_opts: dict, steps: int, threads: int, warm: int = 3):
    from rladder.core.config import resolve
    from rladder.core.objective import model_outputs, total_loss
    from rladder.core.train import Trainer
    from torch.utils.flop_counter import FlopCounterMode

    raw = {"data": {"name": "occluded_mnist", "train": 4096, "val": 64, "test": 64},
           "model": {"name": "omm_rladder", **model_opts},
           "tasks": {"predict": {"name": "next_step"}, "classify": {"name": "classify"}},
           "train": {"steps": warm + steps, "batch_size": 32, "log_every": warm, "eval_every": 10**6,
                     "checkpoint_every": 10**6, "threads": threads}}
    config = resolve(raw)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, Path(tmp) / "run", progress=False, log=lambda m: None)
        batch = next(iter(trainer.train_loader))
        with FlopCounterMode(display=False) as counter:
            out = model_outputs(trainer.model, batch, trainer.run.spec, trainer.keep)
            total_loss(trainer.tasks, out, batch)[0].backward()
        flops = counter.get_total_flops()
        trainer.optimizer.zero_grad()
        _, seconds, foreign = foreign_cores(trainer.fit)
        lines = (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()
        timed = [r for r in map(json.loads, lines) if r["split"] == "train"][1:]   # the first interval: warm-up
    params = sum(p.numel() for p in trainer.model.parameters())
    per_step = sum(r["seconds_per_step"] for r in timed) / len(timed)
    wait = sum(r["data_wait"] * r["seconds_per_step"] for r in timed) / sum(r["seconds_per_step"] for r in timed)
    return {"params": params, "gflop_per_step": flops / 1e9, "seconds_per_step": per_step,
            "samples_per_s": 32 / per_step, "data_wait": wait, "gflops": flops / 1e9 / per_step,
            "foreign_cores": foreign}


def generator_benchmark(n=50000):
    from rladder.plugins.occluded_mnist import OccludedMNIST, OccludedMNISTOptions
    from rladder.plugins.mnist import load_mnist
    from rladder.registry import structure

    ds = OccludedMNIST(structure(OccludedMNISTOptions, {"train": n}))
    load_mnist(ds.options.mnist)                                   # cached MNIST, not part of the rate
    best = 0.0
    for _ in range(3):
        _, dt, _ = foreign_cores(lambda: ds.arrays("train"))
        best = max(best, n / dt)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per model")
    ap.add_argument("--write", type=Path, help="update this Markdown file (between the benchmark markers)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quiet = wait_quiet()
    peak = conv_peak()
    ref = max(peak.values())
    models = {"paper size (32-64-128, top 128)": {}, "cpu preset (8-16-32, top 64)": {"channels": [8, 16, 32], "top": 64}}
    rows = {}
    for label, opts in models.items():
        wait_quiet()
        rows[label] = train_benchmark(opts, args.steps, args.threads)
    wait_quiet()
    gen = generator_benchmark()
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "?")
    lines = [f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, fp32; "
             f"other processes used {quiet:.2f} cores before the run.", "",
             "| conv 3x3, batch 32, fwd+bwd | GFLOP/s |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in peak.items()]
    lines += ["", f"Reference (best conv): **{ref:.0f} GFLOP/s**.", "",
              "| RLadder, batch 32, Adam | params | GFLOP/step | s/step | samples/s | GFLOP/s | of conv peak "
              "| data wait | foreign cores |", "|---|---|---|---|---|---|---|---|---|"]
    for label, r in rows.items():
        lines.append(f"| {label} | {r['params'] / 1e6:.2f} M | {r['gflop_per_step']:.1f} | {r['seconds_per_step']:.3f} "
                     f"| {r['samples_per_s']:.1f} | {r['gflops']:.0f} | {100 * r['gflops'] / ref:.0f} % "
                     f"| {100 * r['data_wait']:.2f} % | {r['foreign_cores']:.2f} |")
    lines += ["", f"Occluded Moving MNIST generator (6 frames of 32x32, real digits): **{gen:,.0f} sequences/s**."]
    publish("\n".join(lines), "omm", args.write)


def publish(text: str, section: str, path: Path | None) -> None:
    """Print ``text``; with ``path``, also put it, under the command that ran and today's date, between
    the <!-- bench:SECTION --> markers of that Markdown file (appending the section if it is new)."""
    print(text)
    if path is None:
        return
    from rladder.core.files import write_text
    cmd = f"python tools/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])
    start, end = f"<!-- bench:{section} -->", f"<!-- /bench:{section} -->"
    block = f"{start}\nCommand: `{cmd}` ({time.strftime('%Y-%m-%d')})\n\n{text}\n{end}"
    old = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    write_text(path, new)


if __name__ == "__main__":
    main()

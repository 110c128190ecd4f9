#!/usr/bin/env python
"""GPU path check (one GPU, about 5 minutes): the paper-size Occluded Moving MNIST RLadder, batch 100.

Every part goes through the real trainer and launcher:
  1. eager fp32, eager bf16 and the captured bf16 step (train.compile with mode 'reduce-overhead', which
     runs the compiled graphs as CUDA graphs, and a compiled Adam): samples/s after warm-up, and the
     speed-up of the captured step over the eager bf16 step of the same model in the same run;
  2. the captured step's first losses against the eager step's (same seed, same batches);
  3. loaders: the split resident on the GPU (memory loader, placement = device) and WebDataset
     shards with pinned memory and 4 workers: samples/s and the share of time spent waiting for data;
  4. a `rladder train` with train.max_minutes that must end cleanly at its deadline with a test
     evaluation (eval-test.json) and its pictures.

    python tools/gpu_check.py --write docs/benchmarks.md         # on a machine with a GPU
    python tools/gpu_check.py --device cpu --tiny --write FILE    # a dry run of every code path (CI)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_omm import publish  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def data_table(batch: int, tiny: bool) -> dict:
    if tiny:        # two frames keep the tracing of the compiled step short on a CPU
        return {"name": "occluded_mnist", "train": batch * 4, "val": batch, "test": batch, "frames": 2}
    return {"name": "occluded_mnist", "train": max(4096, batch * 8), "val": 500, "test": 500}


def raw_config(device: str, steps: int, batch: int, train_extra: dict, loader: dict, tiny: bool) -> dict:
    model = {"name": "omm_rladder", **({"channels": [4, 4, 8], "top": 8} if tiny else {})}
    return {"data": data_table(batch, tiny), "model": model, "loader": loader,
            "tasks": {"predict": {"name": "next_step"}, "classify": {"name": "classify", "every_step": True}},
            "train": {"steps": steps, "batch_size": batch, "device": device, "log_every": 1,
                      "eval_every": 10**6, "checkpoint_every": 10**6, **train_extra}}


def run(device: str, steps: int, batch: int, train_extra: dict, loader: dict, tiny: bool = False) -> dict:
    """Train ``steps`` steps; samples/s over the steps after the first third (warm-up, compilation)."""
    from rladder.core.config import resolve
    from rladder.core.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        t = Trainer(resolve(raw_config(device, steps, batch, train_extra, loader, tiny)), Path(tmp) / "run",
                    progress=False, log=lambda m: None)
        t0 = time.perf_counter()
        t.fit()
        wall = time.perf_counter() - t0
        records = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if r["split"] == "train"]
    timed = records[len(records) // 3:] or records
    per_step = sum(r["seconds_per_step"] for r in timed) / len(timed)
    return {"samples_per_s": batch / per_step, "data_wait": sum(r["data_wait"] for r in timed) / len(timed),
            "losses": [r["loss"] for r in records], "wall": wall, "first_step_s": records[0]["seconds_per_step"]}


def deadline_run(device: str, batch: int, minutes: float, tiny: bool) -> dict:
    """`rladder train` with train.max_minutes: it must stop at the deadline and still test and draw."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "deadline.toml"
        raw = raw_config(device, 10**7, batch, {"max_minutes": minutes, "schedule_by": "time", "log_every": 50,
                                                "eval_every": 10**6, "precision": "bf16"},
                         {"name": "memory", "placement": "device"}, tiny)
        from rladder.core.config import resolve, to_toml

        cfg.write_text(to_toml(resolve(raw)))
        run_dir = Path(tmp) / "run"
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "rladder.core", "train", str(cfg), "--run-dir", str(run_dir)],
                             capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"the max_minutes run failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        meta = json.loads((run_dir / "meta.json").read_text())
        test = json.loads((run_dir / "eval-test.json").read_text())
        pictures = sorted(p.name for p in run_dir.glob("*.png"))
    stop = meta.get("stopped_at_deadline") or sys.exit("the max_minutes run did not stop at its deadline")
    return {"wall": wall, "step": stop["step"], "minutes": stop["minutes"], "test_step": test["step"],
            "error": test["metrics"].get("classify/error"), "pictures": pictures}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=90, help="steps of each timed variant")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--deadline-minutes", type=float, default=2.0, help="train.max_minutes of the deadline run")
    ap.add_argument("--compile-backend", default="inductor", help="aot_eager: trace without code generation (CPU)")
    ap.add_argument("--tiny", action="store_true", help="tiny widths and data: check the code paths, not the speed")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs a GPU (use --device cpu --tiny for a dry run)")
    if args.tiny:
        args.steps, args.batch = min(args.steps, 6), min(args.batch, 8)
        args.deadline_minutes = min(args.deadline_minutes, 0.05)
    from rladder.core.shards import build

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (dry run)"
    on_device = {"name": "memory", "placement": "device"}
    captured = {"precision": "bf16", "compile": True, "compile_mode": "reduce-overhead",
                "compile_backend": args.compile_backend, "compile_optimizer": True}
    variants = {"eager fp32": {"precision": "fp32"}, "eager bf16": {"precision": "bf16"},
                "captured bf16 (compiled step, CUDA graphs)": captured}
    results: dict[str, dict] = {}
    failed: dict[str, str] = {}

    def attempt(name: str, train) -> None:
        """One variant; a failure is reported in the table (and the exit code), the other variants still run."""
        try:
            r = train()
            if not all(x == x for x in r["losses"]):
                raise FloatingPointError("the loss became NaN")
            results[name] = r
            print(f"{name}: {r['samples_per_s']:.0f} samples/s, data wait {100 * r['data_wait']:.1f} %", flush=True)
        except Exception as exc:  # noqa: BLE001 - e.g. a CUDA-graph error in one variant must not hide the others
            failed[name] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
            print(f"{name}: FAILED {failed[name]}", flush=True)

    for name, extra in variants.items():
        attempt(name, lambda extra=extra: run(args.device, args.steps, args.batch, extra, on_device, args.tiny))
    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "omm"
        table = data_table(args.batch, args.tiny)
        build(table, shards, ["train", "val"], max(1, table["val"] // 4), log=lambda m: None)   # >= 4 shards
        attempt("eager bf16, WebDataset shards (4 workers, pinned)", lambda: run(
            args.device, args.steps, args.batch, {"precision": "bf16"},
            {"name": "webdataset", "shards": str(shards), "workers": 4}, args.tiny))
    eager, fast = results.get("eager bf16"), results.get("captured bf16 (compiled step, CUDA graphs)")
    deadline = deadline_run(args.device, args.batch, args.deadline_minutes, args.tiny)
    size = "tiny RLadder (4-4-8, top 8, 2 frames)" if args.tiny else "paper-size RLadder (32-64-128, top 128, 5 frames)"
    lines = [f"Device: {gpu}, torch {torch.__version__}; {size}, batch {args.batch}, {args.steps} steps per variant "
             f"(samples/s over the last two thirds).", "",
             "| variant | samples/s | data wait | first step (s) | wall (s) |", "|---|---|---|---|---|"]
    lines += [f"| {n} | {r['samples_per_s']:.0f} | {100 * r['data_wait']:.1f} % | {r['first_step_s']:.2f} "
              f"| {r['wall']:.1f} |" for n, r in results.items()]
    lines += [f"| {n} | failed: {why} | | | |" for n, why in failed.items()]
    if eager and fast:
        agree = max(abs(a - b) for a, b in zip(eager["losses"][:3], fast["losses"][:3]))
        versus = (f"Captured step against the eager bf16 step: {fast['samples_per_s'] / eager['samples_per_s']:.2f}x "
                  f"the samples/s; first three losses differ by at most {agree:.2e} (bf16).")
    else:
        versus = "Captured step against the eager bf16 step: not compared (a variant failed)."
    lines += ["", versus,
              f"max_minutes run: train.max_minutes = {args.deadline_minutes:g} stopped at step {deadline['step']} "
              f"after {deadline['minutes']:.2f} min, then tested the checkpoint of step {deadline['test_step']} "
              f"(classification error {deadline['error']:.1f} %) and drew {', '.join(deadline['pictures'])}; "
              f"{deadline['wall']:.0f} s in all."]
    publish("\n".join(lines), "gpu", args.write)
    if failed:
        sys.exit(f"{len(failed)} variant(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()

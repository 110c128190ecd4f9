"""Train variants of one config over seeds and tabulate their validation metrics at fixed steps.

Each variant is a name and `--set` overrides; every (variant, seed) is one `rladder train` run in
OUT/<variant>/seed<k> (a run that already finished is read, not trained again). Runs go
``--parallel`` at a time, one torch thread each. The table (Markdown, printed and written to
OUT/sweep.md) gives, per variant, the mean ± std over seeds of each metric at each step.

    python tools/sweep.py configs/omm/rladder_quick.toml --out runs/sweep-gate \\
        --variant base= --variant "gate0=model.links.gate=channel" \\
        --seeds 0,1,2 --parallel 2 --metric classify/error --metric predict/prediction_error --at 400 --at 1200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE...] (or NAME= for the base)")
    return name, [s for s in sets.split(";") if s.strip()]


def train(config: list[str], sets: list[str], run_dir: Path, seed: int, log) -> tuple[int, float]:
    if (run_dir / "done").is_file():
        return 0, 0.0
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "rladder.core", "train", *config, "--run-dir", str(run_dir), "--no-test",
           "--set", f"seed={seed}", "--set", "train.threads=1", *[a for s in sets for a in ("--set", s)]]
    started = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(str(run_dir) + ".log", "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    wall = time.time() - started
    if rc == 0:
        (run_dir / "done").write_text(f"{wall:.1f}\n")
    log(f"{run_dir}: exit {rc} after {wall / 60:.1f} min")
    return rc, wall


def val_at(run_dir: Path, metric: str, step: int) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["split"] == "val" and r["step"] == step and metric in r:
            return float(r[metric])
    return None


def fmt(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="+")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--variant", action="append", required=True, help="NAME=KEY=VALUE[;KEY=VALUE...]")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--metric", action="append", default=None)
    ap.add_argument("--at", action="append", type=int, required=True, help="validation step(s) to report")
    args = ap.parse_args(argv)
    variants = [parse_variant(v) for v in args.variant]
    seeds = [int(s) for s in args.seeds.split(",")]
    metrics = args.metric or ["classify/error", "predict/prediction_error"]
    jobs = [(name, sets, seed) for seed in seeds for name, sets in variants]
    log = lambda m: print(m, flush=True)  # noqa: E731
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(lambda j: train(args.config, j[1], args.out / j[0] / f"seed{j[2]}", j[2], log), jobs))
    head = ["variant", "overrides"] + [f"{m} @ {s}" for m in metrics for s in args.at]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, sets in variants:
        cells = [name, "; ".join(f"`{s}`" for s in sets) or "–"]
        for m in metrics:
            for s in args.at:
                cells.append(fmt([val_at(args.out / name / f"seed{k}", m, s) for k in seeds]))
        lines.append("| " + " | ".join(cells) + " |")
    table = f"Seeds {','.join(map(str, seeds))}; config {' '.join(args.config)}\n\n" + "\n".join(lines) + "\n"
    (args.out / "sweep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

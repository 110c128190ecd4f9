#!/usr/bin/env python
"""Which decoder-to-encoder links does a trained RLadder use? Close them at test time and see.

Loads a run's checkpoint and evaluates it on a split as trained, with every learned link gate set
to 0 (the encoder then no longer receives d_l(t-1)), and with each level's gate set to 0 alone.
A link the model relies on costs accuracy when closed; one it ignores costs nothing. Every row
sets all the gates (closed or as trained); nothing in the run folder is written. Needs links gated with
``links.gate = "scalar"`` or ``"channel"`` (the OMM RLadder's default).

    python tools/ablate_links.py RUN_DIR [--split val] [--checkpoint best|last] [--batches 0]

Prints one line per row with every task's headline metrics. Measured results: docs/results.md
("Which links the trained RLadder uses").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def ablate(run_dir: Path, split: str = "val", which: str = "best", batches: int = 0) -> dict[str, dict[str, float]]:
    """{row: metrics}; rows: "as trained", "all links closed", then "level <l> closed" per gated level."""
    from rladder.core.data import make_loader
    from rladder.core.distributed import Dist
    from rladder.core.evaluation import evaluate
    from rladder.core.runs import load_trained

    config, run, _ = load_trained(run_dir, which)
    run.dataset.check_split(split)
    gates = {name: p for name, p in run.model.named_parameters() if name.endswith("feedback.gate")}
    if not gates:
        raise SystemExit(f"{run_dir}: the model has no learned link gates (links.gate = 'none' or no links); "
                         "train with links.gate = 'channel' or 'scalar' to ablate links at test time")
    tasks = torch.nn.ModuleDict(run.tasks)
    wanted = [f"{label}/{m.name}" for label, task in run.tasks.items() for m in task.metrics()]
    saved = {name: p.detach().clone() for name, p in gates.items()}

    def run_eval(closed: list[str]) -> dict[str, float]:
        with torch.no_grad():
            for name, p in gates.items():
                p.copy_(torch.zeros_like(p) if name in closed else saved[name])
        loader = make_loader(run, config, split, train=False, dist=Dist())
        metrics = evaluate(run.model, tasks, run.spec, loader, torch.device("cpu"), max_batches=batches)
        return {k: metrics[k] for k in wanted if k in metrics}

    rows = {"as trained": run_eval([]), "all links closed": run_eval(list(gates))}
    for name in gates:
        rows[f"level {name.split('.')[1]} closed"] = run_eval([name])
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--split", default="val")
    ap.add_argument("--checkpoint", default="best", choices=["best", "last"])
    ap.add_argument("--batches", type=int, default=0, help="evaluate this many batches only (0: the whole split)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.run_dir / "config.toml").is_file():
        sys.exit(f"{args.run_dir}: not a run folder (no config.toml); give the folder `rladder train` wrote")
    rows = ablate(args.run_dir, args.split, args.checkpoint, args.batches)
    keys = list(next(iter(rows.values())))
    print(f"{args.run_dir}, {args.split} split, {args.checkpoint} checkpoint")
    print(f"{'row':<20}" + "".join(f"{k:>30}" for k in keys))
    for row, metrics in rows.items():
        print(f"{row:<20}" + "".join(f"{metrics[k]:>30.2f}" for k in keys))


if __name__ == "__main__":
    main()

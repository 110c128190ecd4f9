"""Which task trains which part of a model: gradient norms per part, one task at a time.

Loads a run folder (its config, and the weights of a checkpoint, or the initial weights), takes a
few training batches and, for every task alone, back-propagates its weighted cost and reports the
gradient norm of every part (``model.parts()``: encoder.<l>, decoder.<l>, feedback.<l>, heads.<name>).
This is how the decoder-to-encoder investigation (docs/results.md, "Why the RLadder lost to its
ablation") saw that the decoder levels above the bottom were trained by the classification cost
through the links, and hardly by the prediction cost they exist for.

    python tools/probe_gradients.py RUN_DIR [--checkpoint init|best|last] [--batches 4]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch


def probe(run_dir: Path, which: str = "last", batches: int = 4, seed: int = 0) -> dict[str, dict[str, float]]:
    from rladder.core import checkpoint
    from rladder.core.data import make_loader
    from rladder.core.distributed import Dist
    from rladder.core.objective import corrupt, model_outputs, needed_outputs, prepare
    from rladder.core.runs import checkpoint_path, load_trained, run_config
    from rladder.core.assemble import build_run

    torch.manual_seed(seed)
    if which == "init":
        config = run_config(run_dir)
        run = build_run(config)
    else:
        config, run, _ = load_trained(run_dir, which)
        tasks_state = checkpoint.load(checkpoint_path(run_dir, which))["tasks"]
        torch.nn.ModuleDict(run.tasks).load_state_dict(tasks_state)
    model, tasks = run.model.train(), run.tasks
    loader = iter(make_loader(run, config, "train", True, Dist()))
    parts = model.parts()
    sq = {label: {name: 0.0 for name in parts} for label in tasks}
    keep = needed_outputs(tasks)
    for _ in range(batches):
        batch = prepare(tasks, model, corrupt(next(loader), config.train.input_noise))
        for label, task in tasks.items():
            model.zero_grad(set_to_none=True)
            outputs = model_outputs(model, batch, run.spec, keep)
            (task.weight * task.loss(outputs, batch)).backward()
            for name, part in parts.items():
                sq[label][name] += sum(float(p.grad.pow(2).sum()) for p in part.parameters() if p.grad is not None)
    return {label: {name: math.sqrt(v / batches) for name, v in per.items()} for label, per in sq.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--checkpoint", default="last", choices=["init", "best", "last"])
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    table = probe(args.run_dir, args.checkpoint, args.batches)
    labels = list(table)
    parts = list(next(iter(table.values())))
    print(f"gradient norm per part, each task alone ({args.checkpoint} weights of {args.run_dir}, "
          f"{args.batches} training batches)")
    print(f"{'part':<14}" + "".join(f"{label:>14}" for label in labels))
    for part in parts:
        print(f"{part:<14}" + "".join(f"{table[label][part]:>14.4f}" for label in labels))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Does a trained moving-MNIST RTagger track the digits, or split the canvas? (docs/table4.md)

The per-frame AMI that Table 4 reports cannot tell a grouping by motion from a fixed spatial
partition: two digits at different places are split by any partition of the canvas (fixed left /
right halves score about 0.39 on the `cpu` budget's 32x32 videos). A grouping by motion keeps each
digit in one group for the whole sequence, also when it crosses the canvas; a fixed partition
changes the digit's group when it crosses the partition's border. So this prints, for the run's
grouping and for fixed halves of the canvas, on the same pixels as the AMI task (each digit's own
pixels in the predicted frame, background and overlaps left out):

* the AMI per frame and its mean (the task's ``ami``);
* the **sequence AMI**: one AMI per sequence over the pixels of all its frames together, so a digit
  must keep its group from frame to frame to score;
* the **identity share**: of every digit's pixels over the sequence, the share in that digit's most
  frequent group (1 for a digit that never changes group), and how often the two digits' most
  frequent groups are the same (they should not be).

    python tools/video_grouping_check.py runs/rtagger-video --split test --checkpoint last
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def halves(like: torch.Tensor, axis: int) -> torch.Tensor:
    """Logits shaped like ``like`` (B, T, K, 1, S, S), but K = 2: fixed halves of the canvas along ``axis``."""
    from rladder.plugins.grouping_tasks import canvas_halves

    return canvas_halves(like.flatten(0, 1), axis).unflatten(0, like.shape[:2])


def scores(masks: torch.Tensor, logits: torch.Tensor) -> dict[str, float]:
    """masks (B, T, 2, S, S) ground truth, logits (B, T, K, 1, S, S): the figures of the docstring."""
    from rladder.plugins.grouping_tasks import ami_scores, sequence_ami_scores

    b, t = masks.shape[:2]
    per_frame, valid = ami_scores(masks.flatten(0, 1), logits.flatten(0, 1))
    per_frame, valid = per_frame.reshape(b, t), valid.reshape(b, t)
    frame_means = [per_frame[:, i][valid[:, i]].mean() for i in range(t)]
    seq, seq_valid = sequence_ami_scores(masks, logits)
    keep = masks.max(2).values > 0.9                                      # (B, T, S, S)
    truth, group = masks.argmax(2), logits.argmax(2).squeeze(2)           # (B, T, S, S)
    shares, same = [], []
    for n in range(b):
        majority = []
        for digit in range(masks.shape[2]):
            groups = group[n][keep[n] & (truth[n] == digit)]
            if len(groups):
                counts = torch.bincount(groups, minlength=logits.shape[2])
                shares.append(float(counts.max() / counts.sum()))
                majority.append(int(counts.argmax()))
        if len(majority) == 2:
            same.append(majority[0] == majority[1])
    return {"ami": float(np.mean(frame_means)), "frames": [float(f) for f in frame_means],
            "sequence_ami": float(seq[seq_valid].mean()), "identity": float(np.mean(shares)),
            "same_group": float(np.mean(same))}


def check(run_dir: Path, split: str = "test", which: str = "best", sequences: int = 500) -> tuple[str, dict]:
    """A title line and {grouping: scores} for the run's grouping and the fixed halves of the canvas."""
    from rladder.core.data import make_loader
    from rladder.core.distributed import Dist
    from rladder.core.runs import load_trained

    config, run, step = load_trained(run_dir, which)
    if "heads.mask_logits" not in run.model.output_names() or "masks_next" not in run.spec.keys:
        raise SystemExit(f"{run_dir} is not a video grouping run (it needs a model with mask logits, such as "
                         "rtagger, on data with next-frame masks, such as moving_mnist)")
    loader = make_loader(run, config, split, train=False, dist=Dist(), device=torch.device("cpu"))
    masks, logits, seen = [], [], 0
    with torch.no_grad():
        for batch in loader:
            out, _ = run.model(batch["x"], keep=["heads.mask_logits"])
            masks.append(batch["masks_next"])
            logits.append(out["heads.mask_logits"])
            seen += len(batch["x"])
            if seen >= sequences:
                break
    masks, logits = torch.cat(masks)[:sequences], torch.cat(logits)[:sequences]
    title = (f"{run_dir} ({which} checkpoint, step {step}), {len(masks)} {split} sequences of "
             f"{masks.shape[1]} frames")
    rows = {"the run's": logits, "left / right halves": halves(logits, -1), "top / bottom halves": halves(logits, -2)}
    return title, {name: scores(masks, lg) for name, lg in rows.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--sequences", type=int, default=500, help="How many sequences of the split to score.")
    a = p.parse_args()
    torch.set_num_threads(1)
    title, table = check(a.run_dir, a.split, a.checkpoint, a.sequences)
    print(title)
    print("| grouping | AMI (mean over frames) | AMI per frame | sequence AMI | identity share "
          "| both digits in one group |")
    print("|---|---|---|---|---|---|")
    for name, s in table.items():
        frames = " ".join(f"{f:.2f}" for f in s["frames"])
        print(f"| {name} | {s['ami']:.3f} | {frames} | {s['sequence_ami']:.3f} | {s['identity']:.3f} | "
              f"{s['same_group']:.3f} |")


if __name__ == "__main__":
    main()

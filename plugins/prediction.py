"""Next-step prediction at the bottom of the decoder (paper sections 2 and 3.1).

The head named ``head`` (a 1x1 readout of the bottom decoder output, logits) at step t
predicts ``batch[target]`` at step t (for video: the occluded frame t+1). Cost: per-pixel
binary cross-entropy on the logits, or the squared error of their sigmoid; ``reduction``
averages over pixels (``mean``) or sums over each frame's pixels (``sum``, spec 4.1.3).

Metrics: ``prediction_error`` = per-pixel MSE of the sigmoid prediction x 1e5, averaged over
pixels, steps and sequences (spec 4.1.2, Table 1); ``copy_last_error`` = the same for copying
the current input as the prediction (a baseline every report should show); ``bce``.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MeanSquaredError

from rladder.core import Needs, Task, TaskOptions
from rladder.registry import Component, hookimpl, option

SCALE = 1e5


@attrs.frozen
class NextStepOptions(TaskOptions):
    head: str = option("frame", help="Head with the prediction logits (B, T, *step_shape).")
    target: str = option("x_next", help="Batch key of the targets (B, T, *step_shape), values in [0, 1].")
    loss: Literal["bce", "mse"] = option("bce", help="Per-pixel binary cross-entropy on logits, or squared error.")
    reduction: Literal["mean", "sum"] = option("mean", help="Average over a frame's pixels, or sum them.")
    input: str = option("x", help="Batch key of the inputs, for the copy-last-input baseline ('' = none).")


class NextStep(Task):
    def __init__(self, options: NextStepOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o = options
        self.mse = MeanSquaredError()
        self.copy_mse = MeanSquaredError()
        self.bce = MeanMetric()

    def needs(self) -> Needs:
        keys = (self.o.target,) + ((self.o.input,) if self.o.input else ())
        return Needs((f"heads.{self.o.head}",), keys)

    def loss(self, outputs, batch):
        logits, target = outputs[f"heads.{self.o.head}"].float(), batch[self.o.target]
        if self.o.loss == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_pixel = (torch.sigmoid(logits) - target) ** 2
        if self.o.reduction == "mean":
            return per_pixel.mean()
        return per_pixel.flatten(2).sum(2).mean()

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        logits, target = outputs[f"heads.{self.o.head}"].float(), batch[self.o.target]
        self.mse.update(torch.sigmoid(logits).flatten(), target.flatten())
        if self.o.input:
            self.copy_mse.update(batch[self.o.input].flatten(), target.flatten())
        self.bce.update(F.binary_cross_entropy_with_logits(logits, target))

    def compute_metrics(self):
        out = {"prediction_error": float(self.mse.compute()) * SCALE, "bce": float(self.bce.compute())}
        if self.o.input:
            out["copy_last_error"] = float(self.copy_mse.compute()) * SCALE
        return out

    def reset_metrics(self):
        for m in (self.mse, self.copy_mse, self.bce):
            m.reset()

    def predictions(self, outputs):
        return {"next_frame": torch.sigmoid(outputs[f"heads.{self.o.head}"].float())}


@hookimpl
def rladder_components():
    return [Component("task", "next_step", NextStep, NextStepOptions,
                      "Next-step (next-frame) prediction from a bottom readout; BCE or MSE.")]

"""Next-step prediction at the bottom of the decoder (paper sections 2 and 3.1).

The head named ``head`` (a 1x1 readout of the bottom decoder output, logits) at step t predicts
the input of step t+1. Its target is ``batch[target]``; with ``target = "auto"`` that is the
dataset's ``x_next`` when it declares one (Occluded Moving MNIST: the occluded frame t+1, so every
step has a target), and otherwise the input itself shifted by one step, so any sequence dataset
can be used (the last step then has no target). Cost: per-pixel binary cross-entropy on the
logits, or the squared error of their sigmoid; ``reduction`` averages over a step's values
(``mean``) or sums them (``sum``, spec 4.1.3). A batch key ``step_mask`` (B, T), when present,
marks the steps that count (padding excluded).

Metrics: ``prediction_error`` = per-pixel MSE of the sigmoid prediction x 1e5, averaged over
pixels, steps and sequences (spec 4.1.2, Table 1); ``copy_last_error`` = the same for copying
the current input as the prediction (a baseline every report should show); ``nll`` = the
Bernoulli negative log-likelihood in nats per step, summed over a step's values (the music
papers' frame-level NLL); ``bce`` per value. ``report`` picks the headline: ``mse`` or ``nll``.
Beside ``nll`` two trivial baselines: ``uniform_nll`` (every value at probability 0.5: n ln 2 nats
per step for n values, 61.0 for 88 piano keys) and, with ``prior`` (default: the batch key
``x_prior`` when the dataset declares it, e.g. every piano key's training-set frequency),
``prior_nll``, the NLL of predicting those probabilities at every step.

Generation (`rladder generate`): ``sample_input`` draws every value of the next input from its
predicted Bernoulli probability.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, SumMetric

from rladder.core import Metric, Needs, Task, TaskOptions
from rladder.registry import Component, hookimpl, option

SCALE = 1e5


@attrs.frozen
class NextStepOptions(TaskOptions):
    head: str = option("frame", help="Head with the prediction logits (B, T, *step_shape).")
    target: str = option("auto", help="Batch key of the targets (B, T, *step_shape) in [0, 1]; 'auto': x_next "
                                      "if the dataset has it, else the input shifted by one step.")
    loss: Literal["bce", "mse"] = option("bce", help="Per-pixel binary cross-entropy on logits, or squared error.")
    reduction: Literal["mean", "sum"] = option("mean", help="Average over a step's values, or sum them.")
    input: str = option("x", help="Batch key of the inputs, for the copy-last-input baseline ('' = none).")
    report: Literal["mse", "nll"] = option("mse", help="Headline metric: prediction_error (MSE x 1e5) or nll "
                                                       "(nats per step).")
    prior: str = option("auto", help="Batch key of reference probabilities, broadcastable to the target, whose NLL "
                                     "is reported as prior_nll; 'auto': x_prior if the dataset has it; '': none.")


class NextStep(Task):
    def __init__(self, options: NextStepOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o = options
        self.shift = options.target == "auto" and "x_next" not in spec.keys
        self.target = "x_uncorrupted" if self.shift else ("x_next" if options.target == "auto" else options.target)
        self.prior = ("x_prior" if "x_prior" in spec.keys else "") if options.prior == "auto" else options.prior
        self.values = int(torch.Size(spec.step_shape).numel())
        self.mse, self.copy_mse = MeanMetric(), MeanMetric()
        self.bce, self.nll_sum, self.steps, self.prior_sum = MeanMetric(), SumMetric(), SumMetric(), SumMetric()

    def needs(self) -> Needs:
        keys = (self.target,) + ((self.o.input,) if self.o.input else ()) + ((self.prior,) if self.prior else ())
        return Needs((f"heads.{self.o.head}",), keys)

    def _pairs(self, outputs, batch):
        """(logits, target, step weights (B, T)) over the steps that have a target."""
        logits, target = outputs[f"heads.{self.o.head}"].float(), batch[self.target].float()
        mask = batch.get("step_mask")
        if self.shift:
            logits, target = logits[:, :-1], target[:, 1:]
            mask = mask[:, 1:] if mask is not None else None
        weights = torch.ones(logits.shape[:2], device=logits.device) if mask is None else mask.float()
        return logits, target, weights

    def loss(self, outputs, batch):
        logits, target, w = self._pairs(outputs, batch)
        if self.o.loss == "bce":
            per_value = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            per_value = (torch.sigmoid(logits) - target) ** 2
        per_step = per_value.flatten(2).sum(2) if self.o.reduction == "sum" else per_value.flatten(2).mean(2)
        return (per_step * w).sum() / w.sum().clamp(min=1)

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        logits, target, w = self._pairs(outputs, batch)
        values = target[0, 0].numel()
        sq = (torch.sigmoid(logits) - target).pow(2).flatten(2).mean(2)          # (B, T)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(2).sum(2)
        self.mse.update(sq, w)
        self.bce.update(bce / values, w)
        self.nll_sum.update((bce * w).sum())
        self.steps.update(w.sum())
        if self.prior:
            p = batch[self.prior].float().clamp(1e-7, 1 - 1e-7).expand_as(target)     # (no F.binary_cross_entropy:
            prior = -(target * p.log() + (1 - target) * (1 - p).log())                # unsafe under autocast)
            self.prior_sum.update((prior.flatten(2).sum(2) * w).sum())
        if self.o.input:
            last = batch[self.o.input].float()
            last = last[:, :-1] if self.shift else last
            self.copy_mse.update((last - target).pow(2).flatten(2).mean(2), w)

    def compute_metrics(self):
        out = {"prediction_error": float(self.mse.compute()) * SCALE, "bce": float(self.bce.compute()),
               "nll": float(self.nll_sum.compute() / self.steps.compute().clamp(min=1)),
               "uniform_nll": self.values * math.log(2)}
        if self.prior:
            out["prior_nll"] = float(self.prior_sum.compute() / self.steps.compute().clamp(min=1))
        if self.o.input:
            out["copy_last_error"] = float(self.copy_mse.compute()) * SCALE
        return out

    def reset_metrics(self):
        for m in (self.mse, self.copy_mse, self.bce, self.nll_sum, self.steps, self.prior_sum):
            m.reset()

    def metrics(self) -> list[Metric]:
        if self.o.report == "nll":
            return [Metric("nll", "next-step NLL", "nats per step", baseline="prior_nll" if self.prior else "")]
        base = "copy_last_error" if self.o.input else ""
        return [Metric("prediction_error", "next-step prediction error", "per-pixel MSE x1e-5", baseline=base)]

    def predictions(self, outputs):
        return {"next_frame": torch.sigmoid(outputs[f"heads.{self.o.head}"].float())}

    def next_input(self, predictions):
        return predictions.get("next_frame")

    def sample_input(self, predictions, generator=None):
        p = predictions.get("next_frame")
        return None if p is None else torch.bernoulli(p.float(), generator=generator)


@hookimpl
def rladder_components():
    return [Component("task", "next_step", NextStep, NextStepOptions,
                      "Next-step (next-frame) prediction from a bottom readout; BCE or MSE.")]

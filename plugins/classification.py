"""Classification at the top (paper section 3.1): cross-entropy on the class head's logits.

The head's logits are (B, T, K). The cost is the cross-entropy at the last step, or averaged
over every step (``every_step``); with a ``label_mask`` in the batch only labelled samples
count. Metrics: ``error`` (%) at the last step (torchmetrics accuracy), ``error_t<k>`` at every
step k (the beliefs of the paper's Fig. 4), ``ce``.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from rladder.core import Metric, Needs, Task, TaskOptions
from rladder.registry import Component, ContractError, hookimpl, option


@attrs.frozen
class ClassifyOptions(TaskOptions):
    head: str = option("class", help="Head with the class logits (B, T, K).")
    target: str = option("y", help="Batch key of the labels (B,) int64.")
    every_step: bool = option(False, help="Average the cost over every step instead of the last one.")


class Classify(Task):
    def __init__(self, options: ClassifyOptions, spec, label: str):
        super().__init__(label, options.weight)
        if not spec.num_classes:
            raise ContractError(f"tasks.{label}: classification needs a dataset with classes")
        self.o = options
        self.steps = 1 if spec.static and spec.seq_len == 1 else spec.seq_len
        self.acc = torch.nn.ModuleList(MulticlassAccuracy(spec.num_classes, average="micro")
                                       for _ in range(self.steps))
        self.ce = MeanMetric()

    def needs(self) -> Needs:
        return Needs((f"heads.{self.o.head}",), (self.o.target,), supervised=True)

    def loss(self, outputs, batch):
        logits, y = outputs[f"heads.{self.o.head}"].float(), batch[self.o.target]
        mask = batch.get("label_mask")
        if mask is not None:
            if not bool(mask.any()):
                return logits.sum() * 0.0  # no labelled sample in this batch: no cost, graph kept
            logits, y = logits[mask], y[mask]
        if self.o.every_step:
            return F.cross_entropy(logits.flatten(0, 1), y.repeat_interleave(logits.shape[1]))
        return F.cross_entropy(logits[:, -1], y)

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        logits, y = outputs[f"heads.{self.o.head}"].float(), batch[self.o.target]
        for t, acc in enumerate(self.acc):
            acc.update(logits[:, t - len(self.acc)], y)
        self.ce.update(F.cross_entropy(logits[:, -1], y))

    def compute_metrics(self):
        errors = [100.0 * (1.0 - float(acc.compute())) for acc in self.acc]
        out = {"error": errors[-1], "ce": float(self.ce.compute())}
        if len(errors) > 1:
            out.update({f"error_t{t + 1}": e for t, e in enumerate(errors)})
        return out

    def reset_metrics(self):
        for m in [*self.acc, self.ce]:
            m.reset()

    def metrics(self) -> list[Metric]:
        return [Metric("error", "classification error", "%")]

    def predictions(self, outputs):
        return {"class_probs": torch.softmax(outputs[f"heads.{self.o.head}"].float(), -1)}


@hookimpl
def rladder_components():
    return [Component("task", "classify", Classify, ClassifyOptions,
                      "Cross-entropy classification at the last step (or every step); error in %.")]

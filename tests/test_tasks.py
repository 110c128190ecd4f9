"""Next-step prediction and classification tasks: costs and metrics against hand computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rladder.core import DataSpec
from rladder.plugins.classification import Classify, ClassifyOptions
from rladder.plugins.prediction import NextStep, NextStepOptions
from rladder.registry import ContractError

SPEC = DataSpec("video", (1, 4, 4), 3, {"x": "", "x_next": "", "y": ""}, num_classes=5)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_next_step_costs_and_metrics():
    logits, target, x = rand(2, 3, 1, 4, 4, seed=1) * 4 - 2, rand(2, 3, 1, 4, 4, seed=2), rand(2, 3, 1, 4, 4, seed=3)
    out, batch = {"heads.frame": logits}, {"x_next": target, "x": x}
    bce = NextStep(NextStepOptions(), SPEC, "p")
    torch.testing.assert_close(bce.loss(out, batch), F.binary_cross_entropy_with_logits(logits, target))
    mse_sum = NextStep(NextStepOptions(loss="mse", reduction="sum"), SPEC, "p")
    expected = ((torch.sigmoid(logits) - target) ** 2).sum((2, 3, 4)).mean()
    torch.testing.assert_close(mse_sum.loss(out, batch), expected)
    bce.update_metrics(out, batch)
    bce.update_metrics({"heads.frame": logits[:1]}, {"x_next": target[:1], "x": x[:1]})
    m = bce.compute_metrics()
    both = torch.cat([logits, logits[:1]]), torch.cat([target, target[:1]]), torch.cat([x, x[:1]])
    assert m["prediction_error"] == pytest.approx(float(((torch.sigmoid(both[0]) - both[1]) ** 2).mean()) * 1e5,
                                                  rel=1e-5)
    assert m["copy_last_error"] == pytest.approx(float(((both[2] - both[1]) ** 2).mean()) * 1e5, rel=1e-5)
    bce.reset_metrics()
    bce.update_metrics(out, batch)
    assert bce.compute_metrics()["prediction_error"] == pytest.approx(
        float(((torch.sigmoid(logits) - target) ** 2).mean()) * 1e5, rel=1e-5)
    assert bce.predictions(out)["next_frame"].min() >= 0


def test_classification_last_step_every_step_and_errors():
    logits = rand(4, 3, 5, seed=4) * 3
    y = torch.tensor([0, 1, 2, 3])
    task = Classify(ClassifyOptions(), SPEC, "c")
    out, batch = {"heads.class": logits}, {"y": y}
    torch.testing.assert_close(task.loss(out, batch), F.cross_entropy(logits[:, -1], y))
    every = Classify(ClassifyOptions(every_step=True), SPEC, "c")
    torch.testing.assert_close(every.loss(out, batch),
                               torch.stack([F.cross_entropy(logits[:, t], y) for t in range(3)]).mean())
    task.update_metrics(out, batch)
    m = task.compute_metrics()
    for t in range(3):
        wrong = (logits[:, t].argmax(-1) != y).float().mean().item() * 100
        assert m[f"error_t{t + 1}"] == pytest.approx(wrong)
    assert m["error"] == m["error_t3"]


def test_label_mask_uses_labelled_samples_only():
    logits = rand(4, 3, 5, seed=5).requires_grad_()
    y = torch.tensor([0, 1, 2, 3])
    task = Classify(ClassifyOptions(), SPEC, "c")
    mask = torch.tensor([True, False, True, False])
    loss = task.loss({"heads.class": logits}, {"y": y, "label_mask": mask})
    torch.testing.assert_close(loss, F.cross_entropy(logits[mask][:, -1], y[mask]))
    none = task.loss({"heads.class": logits}, {"y": y, "label_mask": torch.zeros(4, dtype=torch.bool)})
    none.backward()
    assert none.item() == 0 and logits.grad is not None and logits.grad.abs().sum() == 0


def test_classification_needs_classes():
    with pytest.raises(ContractError, match="needs a dataset with classes"):
        Classify(ClassifyOptions(), DataSpec("video", (1, 4, 4), 3, {"x": ""}), "c")

"""The conformance kit, run over every built-in cell, decoder, dataset, model and task, and shown
to catch broken ones (one broken component per check)."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch
from torch import nn

from rladder.core import DataSpec, Dataset, EncoderCell, Metric, Model, Needs, Task, TaskOptions, reduce_sum
from rladder.core.testing import Skipped, check_component, check_metrics_reduce, conformance_targets
from rladder.registry import Component, ContractError, DataError, Registry, hookimpl, option


def test_conformance(rladder_component, rladder_conformance):
    """One test per built-in encoder_cell and decoder_cell (fixture from the pytest11 plugin)."""
    rladder_conformance.check(rladder_component)


def test_every_builtin_is_a_target():
    targets = conformance_targets(["rladder"])
    assert {("encoder_cell", n) for n in ("conv_lstm", "conv_gru", "lstm", "gru", "conv", "linear", "input")} <= set(targets)
    assert {("decoder_cell", "vanilla"), ("decoder_cell", "learned")} <= set(targets)
    assert {("dataset", n) for n in ("synthetic", "mnist", "occluded_mnist")} <= set(targets)
    assert {("task", n) for n in ("next_step", "classify", "denoise", "mean_teacher")} <= set(targets)
    assert {("model", n) for n in ("ladder", "omm_rladder", "omm_static")} <= set(targets)


@attrs.frozen
class NoOpts:
    pass


class HiddenStateCell(EncoderCell):
    """Wrong: keeps its memory in an attribute instead of the state tuple."""

    def __init__(self, options, in_shape, top_down=True):
        super().__init__()
        self.in_shape = self.out_shape = tuple(in_shape)
        self.w = nn.Linear(in_shape[-1], in_shape[-1])
        self.memory = None

    def forward(self, x, d, state):
        h = torch.tanh(self.w(x) + (0 if self.memory is None else self.memory))
        self.memory = h.detach()
        return h, ()


class UnusedParamCell(EncoderCell):
    """Wrong: a parameter that never reaches the output."""

    def __init__(self, options, in_shape, top_down=True):
        super().__init__()
        self.in_shape = self.out_shape = tuple(in_shape)
        self.w = nn.Linear(in_shape[-1], in_shape[-1])
        self.unused = nn.Parameter(torch.zeros(3))

    def forward(self, x, d, state):
        return torch.tanh(self.w(x)), ()


class WrongShapeCell(UnusedParamCell):
    """Wrong: declares one out_shape and returns another."""

    def forward(self, x, d, state):
        return torch.cat([x, x], 1), ()


@pytest.mark.parametrize("cls, fragment", [
    (HiddenStateCell, "differ by"),
    (UnusedParamCell, "parameter 'unused' gets no gradient"),
    (WrongShapeCell, "output shape"),
])
def test_the_kit_catches_broken_cells(cls, fragment):
    reg = Registry(entry_points=False)

    class Plugin:
        @hookimpl
        def rladder_components(self):
            return [Component("encoder_cell", "bad", cls, NoOpts, "A broken cell.")]

    reg.add_plugin(Plugin(), "bad-plugin")
    with pytest.raises(AssertionError, match=fragment):
        check_component("encoder_cell", "bad", registry=reg)


class VectorOnlyCell(UnusedParamCell):
    """Right: rejects spatial inputs with a ContractError (ValueError works the same)."""

    def __init__(self, options, in_shape, top_down=True):
        if len(in_shape) != 1:
            raise ContractError(f"needs a vector input (D,), got {in_shape}")
        EncoderCell.__init__(self)
        self.in_shape = self.out_shape = tuple(in_shape)
        self.w = nn.Linear(in_shape[0], in_shape[0])

    def forward(self, x, d, state):
        return torch.tanh(self.w(x) + (0 if d is None else d)), ()


def registry_with(*components, builtins: bool = False) -> Registry:
    """A registry with one plugin, 'bad-plugin', providing ``components`` (and the built-ins if asked)."""
    reg = Registry(entry_points=builtins)

    class Plugin:
        @hookimpl
        def rladder_components(self):
            return list(components)

    reg.add_plugin(Plugin(), "bad-plugin")
    return reg


def test_a_cell_may_reject_a_shape_with_a_contract_error():
    check_component("encoder_cell", "vec", registry=registry_with(
        Component("encoder_cell", "vec", VectorOnlyCell, NoOpts, "Vectors only.")))


# ------------------------------------------------------------------------------ datasets
class TinyData(Dataset):
    """Right: 2-step 1x4x4 videos stored as uint8, with labels."""

    keys = {"x": "(B,T,1,4,4) float32 in [0,1]", "y": "(B,) int64 class"}

    def __init__(self, options):
        self.spec = DataSpec("video", (1, 4, 4), 2, dict(self.keys), num_classes=3)

    def arrays(self, split):
        self.check_split(split)
        rng = np.random.default_rng(("train", "val", "test").index(split))
        return {"x": rng.integers(0, 256, (5, 2, 1, 4, 4), dtype=np.uint8), "y": rng.integers(0, 3, 5)}

    def to_batch(self, stored):
        return {"x": stored["x"].float() / 255, "y": stored["y"]}


class CpuMaskData(TinyData):
    """Wrong: multiplies by a mask it keeps on the CPU (crashes on a GPU)."""

    mask = torch.ones(4, 4)

    def to_batch(self, stored):
        return {"x": stored["x"].float() / 255 * self.mask, "y": stored["y"]}


class MissingKeyData(TinyData):
    def to_batch(self, stored):
        return {"x": stored["x"].float() / 255}


class OutOfRangeData(TinyData):
    def to_batch(self, stored):
        return {"x": stored["x"].float(), "y": stored["y"]}


class RaggedData(TinyData):
    def arrays(self, split):
        out = super().arrays(split)
        return {**out, "y": out["y"][:3]}


class NoDummyData(TinyData):
    """Wrong: declares x_next, but keeps the default dummy_batch (x and y only)."""

    keys = {**TinyData.keys, "x_next": "(B,T,1,4,4) float32 in [0,1]"}

    def to_batch(self, stored):
        return {**super().to_batch(stored), "x_next": stored["x"].float() / 255}


class MissingFilesData(TinyData):
    def arrays(self, split):
        raise DataError("tiny.bin not found in /nowhere")


@pytest.mark.parametrize("cls, fragment", [
    (CpuMaskData, "to_batch does not follow the device of its input tensors"),
    (MissingKeyData, r"gives keys \['x'\], but the DataSpec declares \['x', 'y'\] \(missing \['y'\]"),
    (OutOfRangeData, r"'x' is declared in \[0, 1\] but holds values in"),
    (RaggedData, "the arrays have no common first"),
    (NoDummyData, r"dummy_batch has keys \['x', 'y'\], but to_batch gives \['x', 'x_next', 'y'\]"),
])
def test_the_kit_catches_broken_datasets(cls, fragment):
    reg = registry_with(Component("dataset", "bad", cls, NoOpts, "A broken dataset."))
    with pytest.raises(AssertionError, match=r"^dataset 'bad' \(bad-plugin\)[ :,].*" + fragment):
        check_component("dataset", "bad", registry=reg)
    check_component("dataset", "good", registry=registry_with(Component("dataset", "good", TinyData, NoOpts, "Ok.")))


def test_a_dataset_without_its_files_is_a_skip_with_the_reason():
    reg = registry_with(Component("dataset", "far", MissingFilesData, NoOpts, "Files elsewhere."))
    with pytest.raises(Skipped, match="tiny.bin not found"):
        check_component("dataset", "far", registry=reg)


# ------------------------------------------------------------------------------ models
@attrs.frozen
class GRUOptions:
    units: int = option(6, help="Hidden units.")


class TinyGRU(Model):
    """Right: a GRU on flattened steps with a readout of the input's shape."""

    def __init__(self, options, spec):
        super().__init__()
        self.input_shape = tuple(spec.step_shape)
        size = math.prod(self.input_shape)
        self.cell = nn.GRUCell(size, options.units)
        self.frame = nn.Linear(options.units, size)

    def output_names(self):
        return ["encoder.0", "heads.frame"]

    def init_state(self, batch, like):
        return like.new_zeros(batch, self.cell.hidden_size)

    def step(self, x_t, state=None, keep=None):
        keep = self.resolve_keep(keep)
        h = self.cell(x_t.flatten(1), self.init_state(len(x_t), x_t) if state is None else state)
        out = {"encoder.0": h, "heads.frame": self.frame(h).view_as(x_t)}
        return {k: v for k, v in out.items() if keep is None or k in keep}, h


class HiddenStateModel(TinyGRU):
    """Wrong: mixes in the last hidden state it remembers itself, whatever state it is given."""

    def step(self, x_t, state=None, keep=None):
        state = self.init_state(len(x_t), x_t) if state is None else state
        out, h = super().step(x_t, state + getattr(self, "last", 0), keep)
        self.last = h.detach()
        return out, h


class UndeclaredOutputModel(TinyGRU):
    def output_names(self):
        return ["encoder.0"]

    def resolve_keep(self, keep):
        return None if keep is None else set(keep)


class IgnoresKeepModel(TinyGRU):
    def step(self, x_t, state=None, keep=None):
        return super().step(x_t, state, None)


class SilentUnknownModel(TinyGRU):
    def resolve_keep(self, keep):
        return None if keep is None else set(keep)


class LeakyDetachModel(TinyGRU):
    def detach_state(self, state):
        return state


class UnusedParamModel(TinyGRU):
    def __init__(self, options, spec):
        super().__init__(options, spec)
        self.spare = nn.Linear(2, 2)


@pytest.mark.parametrize("factory, fragment", [
    (HiddenStateModel, "two chunks with the state carried differ by"),
    (UndeclaredOutputModel, r"step\(\) returns \['heads.frame'\], which output_names\(\) does not declare"),
    (IgnoresKeepModel, r"step\(keep=\['encoder.0'\]\) returns \['encoder.0', 'heads.frame'\], not just"),
    (SilentUnknownModel, r"step\(keep=\['no_such.output'\]\) returns \[\] instead of raising"),
    (LeakyDetachModel, r"detach_state\(\) leaves \['state'\] attached"),
    (UnusedParamModel, r"parameters 'spare.weight', 'spare.bias' get no gradient from the sum of squares"),
    (lambda o, spec: nn.GRU(3, 3), "the factory returned GRU, not a LadderSpec or a rladder.core.Model"),
])
def test_the_kit_catches_broken_models(factory, fragment):
    reg = registry_with(Component("model", "bad", factory, GRUOptions, "A broken model."))
    with pytest.raises(AssertionError, match=r"^model 'bad' \(bad-plugin\) on video data \(1, 8, 8\).*" + fragment):
        check_component("model", "bad", registry=reg)


def test_a_model_is_checked_on_every_probe_data_it_accepts_and_on_its_example():
    seen = []

    def build(options, spec):
        seen.append((spec.modality, spec.static))
        return TinyGRU(options, spec)

    check_component("model", "gru", registry=registry_with(Component("model", "gru", build, GRUOptions, "Ok.")))
    assert seen == [("video", False), ("video", True), ("sequence", False), ("vector", False)]
    seen.clear()
    reg = registry_with(Component("model", "gru", build, GRUOptions, "Ok.", example={
        "data": {"name": "synthetic", "modality": "vector", "step_shape": [5], "train": 4, "val": 4, "test": 4},
        "model": {"units": 3}}), builtins=True)
    check_component("model", "gru", registry=reg)
    assert seen == [("vector", False)]


# ------------------------------------------------------------------------------ tasks
class FrameMSE(Task):
    """Right: squared error of the next-frame readout, metrics summed with reduce_sum."""

    def __init__(self, options, spec, label):
        super().__init__(label, options.weight)
        self.register_buffer("total", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def needs(self):
        return Needs(("heads.frame",), ("x",))

    def errors(self, outputs, batch):
        return (torch.sigmoid(outputs["heads.frame"][:, :-1]) - batch["x"][:, 1:]) ** 2

    def loss(self, outputs, batch):
        return self.errors(outputs, batch).mean()

    def update_metrics(self, outputs, batch):
        e = self.errors(outputs, batch).flatten(2).mean(2)              # (B, T-1)
        self.total += e.sum().double()
        self.count += e.numel()

    def compute_metrics(self):
        total, count = reduce_sum(self.total, self.count)
        return {"mse": float(total / count)}

    def reset_metrics(self):
        self.total.zero_()
        self.count.zero_()

    def metrics(self):
        return [Metric("mse", "next-frame MSE")]

    def predictions(self, outputs):
        return {"next_frame": torch.sigmoid(outputs["heads.frame"])}

    def next_input(self, predictions):
        return predictions["next_frame"]


class CpuTensorTask(FrameMSE):
    """Wrong: step weights made on the CPU, whatever the batch's device."""

    def loss(self, outputs, batch):
        e = self.errors(outputs, batch).flatten(2).mean(2)
        return (e * torch.ones(e.shape)).mean()


class CpuMetricTask(FrameMSE):
    """Wrong: weights its metric with a CPU tensor, whatever the batch's device."""

    def update_metrics(self, outputs, batch):
        e = self.errors(outputs, batch).flatten(2).mean(2)
        self.total += (e * torch.ones(e.shape)).sum().double()
        self.count += e.numel()


class PlainSumTask(FrameMSE):
    """Wrong: Python floats, never reduced over processes."""

    def update_metrics(self, outputs, batch):
        e = self.errors(outputs, batch)
        self.sum_ = getattr(self, "sum_", 0.0) + float(e.flatten(2).mean(2).sum())
        self.n_ = getattr(self, "n_", 0) + e.shape[0] * e.shape[1]

    def compute_metrics(self):
        return {"mse": self.sum_ / self.n_}

    def reset_metrics(self):
        self.sum_, self.n_ = 0.0, 0


class NoResetTask(FrameMSE):
    def reset_metrics(self):
        pass


class MissingMetricTask(FrameMSE):
    def metrics(self):
        return [Metric("mse", "MSE", baseline="copy_last")]


class FlatPredictionTask(FrameMSE):
    def predictions(self, outputs):
        return {"next_frame": torch.sigmoid(outputs["heads.frame"][:, -1])}


class DetachedLossTask(FrameMSE):
    def loss(self, outputs, batch):
        return super().loss(outputs, batch).detach()


def task_registry(cls):
    """The task as 'bad' beside the built-ins (the kit's default run uses the synthetic data and the ladder)."""
    return registry_with(Component("task", "bad", cls, TaskOptions, "A task."), builtins=True)


@pytest.mark.parametrize("cls, fragment", [
    (CpuTensorTask, r"loss\(\) does not follow the device of the batch .*Expected all tensors to be on the same "
                    r"device"),
    (CpuMetricTask, r"update_metrics\(\) does not follow the device of the batch"),
    (NoResetTask, r"the same batch after reset_metrics\(\) gives other metrics"),
    (MissingMetricTask, r"metrics\(\) names 'copy_last', which compute_metrics\(\) does not give"),
    (FlatPredictionTask, r"prediction 'next_frame' must be a \(B, T, ...\) tensor"),
    (DetachedLossTask, "its loss has no gradient with respect to the model"),
])
def test_the_kit_catches_broken_tasks(cls, fragment):
    reg = task_registry(cls)
    with pytest.raises(AssertionError, match=r"^task 'bad' \(bad-plugin\): " + fragment):
        check_component("task", "bad", registry=reg)


def test_a_right_task_passes_and_its_metrics_reduce_over_two_processes():
    check_component("task", "bad", registry=task_registry(FrameMSE))      # includes check_metrics_reduce


def test_metrics_kept_as_plain_python_numbers_are_caught_by_the_reduce_check():
    reg = task_registry(PlainSumTask)
    with pytest.raises(AssertionError, match=r"^task 'bad' \(bad-plugin\): compute_metrics\(\) in 2 processes, each "
                                             r"updated with 1/2 of a batch, differs .*reduce_sum"):
        check_metrics_reduce("task", "bad", registry=reg)


@pytest.mark.parametrize("name", ["next_step", "classify"])
def test_builtin_task_metrics_reduce_over_two_processes(name):
    check_metrics_reduce("task", name)

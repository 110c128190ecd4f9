"""Conformance checks for datasets, models and tasks (cells and decoders: see the package).

Each check builds the component the way a run does, from its default options or from its
component's ``example`` (a small run config fragment, see ``rladder.registry.Component``), and
fails with one sentence that names the component, its provider and what is wrong.
"""

from __future__ import annotations

import copy
import datetime
import json
import multiprocessing
import os
import re
import tempfile
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rladder.registry import Component, ConfigError, DataError, Registry

from ..assemble import LadderSpec, build_ladder, build_model, build_tasks
from ..interfaces import DataSpec, Dataset, Metric, Model, Task
from ..objective import corrupt, model_outputs, prepare
from . import device as other
from ._common import (REJECTS, Skipped, assert_finite, assert_gradients, calling, check_options, example, label,
                      own_overrides, same_number, squares, tensors)

BATCH = 4
OPTIONAL_KEYS = ("label_mask", "step_mask")

# The run a task is checked in when its component gives no `example`: the built-in synthetic dataset
# and a two-level ladder (conv-LSTM, LSTM) with the heads the built-in tasks read.
DEFAULT_RUN: dict[str, Any] = {
    "data": {"name": "synthetic", "modality": "video", "step_shape": [1, 8, 8], "seq_len": 3, "num_classes": 10,
             "train": 8, "val": 4, "test": 4},
    "model": {"name": "ladder",
              "levels": [{"encoder": {"name": "conv_lstm", "channels": 4}, "decoder": {"name": "vanilla"}},
                         {"encoder": {"name": "lstm", "units": 8}, "decoder": {"name": "vanilla"}}],
              "heads": [{"name": "frame", "source": "decoder.0", "kind": "readout", "out": "input"},
                        {"name": "class", "source": "encoder.-1", "kind": "classifier", "out": "classes"},
                        {"name": "recon", "source": "decoder.0", "kind": "readout", "out": "input"}]},
}

# The data a model is checked on when its component gives no `example` data: each one it accepts.
PROBE_DATA: tuple[DataSpec, ...] = (
    DataSpec("video", (1, 8, 8), 3, {"x": "(B,T,1,8,8)", "y": "(B,)"}, num_classes=10),
    DataSpec("video", (1, 8, 8), 3, {"x": "(B,1,8,8)", "y": "(B,)"}, num_classes=10, static=True),
    DataSpec("sequence", (1, 16), 3, {"x": "(B,T,1,16)", "y": "(B,)"}, num_classes=10),
    DataSpec("vector", (8,), 3, {"x": "(B,T,8)", "y": "(B,)"}, num_classes=10),
)


def _stored_batch(arrays: Mapping[str, np.ndarray], n: int = BATCH) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.array(v[:n])) for k, v in arrays.items()}


def _first_split(dataset: Dataset, what: str) -> dict[str, np.ndarray]:
    split = dataset.spec.splits[0]
    try:
        return dataset.arrays(split)
    except (DataError, ConfigError) as exc:
        raise Skipped(f"{what}: its data is not available here ({type(exc).__name__}: {exc})") from exc


# ============================================================================== datasets
_LAYOUT = re.compile(r"^\s*\(([^)]*)\)")
_UNIT_RANGE = re.compile(r"in \[\s*0(\.0*)?\s*,\s*1(\.0*)?\s*\]")


def check_dataset(comp: Component, registry: Registry | None = None) -> None:
    who = label(comp)
    options = check_options(comp, own_overrides(comp, "data"))
    try:
        with calling(who, "its factory", allow=(DataError, ConfigError)):
            dataset = comp.factory(options)
    except (DataError, ConfigError) as exc:
        raise Skipped(f"{who} cannot be built here from its options ({type(exc).__name__}: {exc})") from exc
    assert isinstance(dataset, Dataset), f"{who} did not build a rladder.core.Dataset but {type(dataset).__name__}"
    spec = dataset.spec
    assert isinstance(spec, DataSpec), f"{who}: its spec is a {type(spec).__name__}, not a rladder.core.DataSpec"
    assert spec.splits, f"{who} declares no splits"
    assert spec.seq_len >= 1, f"{who} declares seq_len {spec.seq_len}; it must be at least 1"
    # whole sequences of different lengths (a dataset with a sequence_layout): T is the batch's own
    layout = getattr(dataset, "sequence_layout", None)
    chunked = callable(layout) and layout() is not None
    first: dict[str, Tensor] | None = None
    for split in spec.splits:
        try:
            with calling(who, f"arrays({split!r})", allow=(DataError, ConfigError)):
                arrays = dataset.arrays(split)
        except (DataError, ConfigError) as exc:
            raise Skipped(f"{who}: split {split!r} is not available here ({type(exc).__name__}: {exc})") from exc
        where = f"{who}, split {split!r}"
        assert isinstance(arrays, Mapping) and arrays, f"{where}: arrays() returned no dict of arrays"
        bad = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
        assert not bad, f"{where}: arrays() values {bad} are not numpy arrays"
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
        assert len(set(lengths.values())) == 1 and None not in lengths.values(), \
            f"{where}: the arrays have no common first (sample) axis: lengths {lengths}"
        n = next(iter(lengths.values()))
        assert n >= 1, f"{where} holds no samples"
        stored = _stored_batch(arrays, min(BATCH, n))
        with calling(where, "to_batch"):
            batch = dataset.to_batch(stored)
        _check_batch(f"{where}: to_batch", spec, batch, min(BATCH, n), chunked)
        if first is None:
            first = batch
            _check_dataset_device(who, dataset, stored, batch)
    with calling(who, "dummy_batch"):
        dummy = dataset.dummy_batch(BATCH)
    wanted = {k for k in first if k not in OPTIONAL_KEYS}
    got = {k for k in dummy if k not in OPTIONAL_KEYS}
    assert got == wanted, (f"{who}: dummy_batch has keys {sorted(got)}, but to_batch gives {sorted(wanted)}; "
                           f"override dummy_batch to give every key")
    for key in wanted:
        a, b = tuple(first[key].shape[1:]), tuple(dummy[key].shape[1:])
        if chunked and not spec.static and a[:1] == tuple(first["x"].shape[1:2]) and len(a) == len(b):
            a, b = a[1:], b[1:]                  # the time axis: any length
        assert dummy[key].shape[0] == BATCH and a == b, (
            f"{who}: dummy_batch's {key!r} has shape {tuple(dummy[key].shape)}, but to_batch gives (B, *{a})")
        assert dummy[key].dtype == first[key].dtype, (
            f"{who}: dummy_batch's {key!r} is {dummy[key].dtype}, but to_batch gives {first[key].dtype}")


def _check_batch(where: str, spec: DataSpec, batch: Mapping[str, Any], n: int, chunked: bool = False) -> None:
    """Keys and shapes of a model batch of ``n`` samples; ``chunked``: T may be any length (the
    batch's own, the same for every key), as for datasets of whole sequences of different lengths."""
    assert isinstance(batch, Mapping), f"{where} returned {type(batch).__name__}, not a dict of tensors"
    keys, declared = set(batch) - set(OPTIONAL_KEYS), set(spec.keys) - set(OPTIONAL_KEYS)
    missing, extra = sorted(declared - keys), sorted(keys - declared)
    assert not missing and not extra, (f"{where} gives keys {sorted(batch)}, but the DataSpec declares "
                                       f"{sorted(spec.keys)} (" + ", ".join(
                                           ([f"missing {missing}"] if missing else [])
                                           + ([f"undeclared {extra}"] if extra else [])) + ")")
    for key, t in batch.items():
        assert isinstance(t, Tensor), f"{where}: {key!r} is a {type(t).__name__}, not a tensor"
        assert t.shape[:1] == (n,), f"{where}: {key!r} has shape {tuple(t.shape)}; its first axis must be B={n}"
    x = batch["x"]
    steps = x.shape[1] if chunked and x.dim() > 1 else spec.seq_len
    lead = (n,) if spec.static else (n, steps)
    want = (*lead, *spec.step_shape)
    layout = "(B, " + ("" if spec.static else "T, ") + "*step_shape)"
    assert tuple(x.shape) == want, f"{where}: 'x' has shape {tuple(x.shape)}, not {layout} = {want}"
    assert x.is_floating_point(), f"{where}: 'x' is {x.dtype}, not a floating-point tensor"
    for key, text in spec.keys.items():
        if key not in batch:                     # an optional key, declared
            continue
        t = batch[key]
        declared = _LAYOUT.match(text)
        if declared:
            dims = [d.strip() for d in declared.group(1).split(",") if d.strip()]
            sizes = {"B": n, "T": steps}
            ok = len(dims) == t.dim() and all(
                (sizes[d] == s) if d in sizes else (int(d) == s) if d.isdigit() else True
                for d, s in zip(dims, t.shape))
            assert ok, (f"{where}: {key!r} has shape {tuple(t.shape)}, but the DataSpec declares "
                        f"{declared.group(0).strip()}")
        if _UNIT_RANGE.search(text):
            assert t.is_floating_point(), f"{where}: {key!r} is declared in [0, 1] but is {t.dtype}"
            lo, hi = float(t.min()), float(t.max())
            assert 0.0 <= lo and hi <= 1.0, \
                f"{where}: {key!r} is declared in [0, 1] but holds values in [{lo:g}, {hi:g}]"
    for key in OPTIONAL_KEYS:
        if key in batch:
            want = (n,) if key == "label_mask" else (n, steps)
            assert tuple(batch[key].shape) == want, f"{where}: {key!r} has shape {tuple(batch[key].shape)}, not {want}"


def _check_dataset_device(who: str, dataset: Dataset, stored: dict[str, Tensor], batch: Mapping[str, Tensor]) -> None:
    try:
        with other.on_other_device():
            moved = dataset.to_batch(other.elsewhere(stored))
    except other.DeviceMismatch as exc:
        raise AssertionError(f"{who}: to_batch does not follow the device of its input tensors (a constant kept "
                             f"on the CPU? move it with .to(stored[...].device) or register it): {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{who}: to_batch fails on tensors that are not on the CPU: "
                             f"{type(exc).__name__}: {exc}") from exc
    on_cpu = [k for k, v in moved.items() if isinstance(v, Tensor) and not other.is_elsewhere(v)]
    assert not on_cpu, (f"{who}: to_batch returns {on_cpu} on the CPU when its input tensors are on another device; "
                        f"make them on the device of the input")
    for key, t in moved.items():
        if isinstance(t, Tensor):
            assert torch.equal(t.inner, batch[key]), f"{who}: to_batch gives other values for {key!r} on another device"


# ============================================================================== models
def check_model(comp: Component, registry: Registry) -> None:
    who = label(comp)
    options = check_options(comp, own_overrides(comp, "model"))
    probes: list[tuple[DataSpec, Tensor | None]] = []
    data_table = example(comp, "data")
    if data_table:
        dataset = registry.build("dataset", data_table, path="example.data")
        batch = dataset.to_batch(_stored_batch(_first_split(dataset, who)))
        probes.append((dataset.spec, batch["x"].float()))
    else:
        probes = [(spec, None) for spec in PROBE_DATA]
    accepted = []
    for spec, x in probes:
        torch.manual_seed(0)
        try:
            made = comp.factory(options, spec=spec)
            model = build_ladder(made, spec, registry) if isinstance(made, LadderSpec) else made
        except REJECTS:
            if data_table:
                raise
            continue
        accepted.append(spec)
        if x is None:
            lead = (BATCH,) if spec.static else (BATCH, spec.seq_len)
            x = torch.rand(*lead, *spec.step_shape, generator=torch.Generator().manual_seed(0))
        _check_model_on(f"{who} on {spec.modality}{' (static)' if spec.static else ''} data "
                        f"{tuple(spec.step_shape)}", model, spec, x)
    assert accepted, (f"{who} accepts none of the kit's probe data ({', '.join(str(s.step_shape) for s, _ in probes)}, "
                      f"static or not); give the component an example with data it accepts")


def _check_model_on(who: str, model: Any, spec: DataSpec, x: Tensor) -> None:
    assert isinstance(model, Model), (f"{who}: the factory returned {type(model).__name__}, not a LadderSpec or a "
                                      f"rladder.core.Model")
    assert tuple(model.input_shape) == tuple(spec.step_shape), \
        f"{who}: input_shape {tuple(model.input_shape)} is not the data's step shape {tuple(spec.step_shape)}"
    names = model.output_names()
    assert names and all(isinstance(n, str) for n in names) and len(set(names)) == len(names), \
        f"{who}: output_names() must be a list of distinct names, got {names!r}"
    steps = spec.seq_len

    def run(state=None):
        return model(x, state, steps=steps) if spec.static else model(x, state)

    x_t = x if spec.static else x[:, 0]
    # one step: declared names, (B, ...) outputs
    model.eval()
    with torch.no_grad(), calling(who, "step()"):
        out, _ = model.step(x_t, None)
    undeclared = sorted(set(out) - set(names))
    assert not undeclared, f"{who}: step() returns {undeclared}, which output_names() does not declare"
    bad = {k: tuple(v.shape) for k, v in out.items() if v.shape[:1] != (BATCH,)}
    assert not bad, f"{who}: step() outputs must be (B, ...) with B={BATCH}; got {bad}"
    # forward over the steps, and in two chunks with the state carried
    with torch.no_grad(), calling(who, "forward()"):
        whole, _ = run()
        if spec.static:
            first, state = model(x, None, steps=1)
            rest, _ = model(x, state, steps=steps - 1) if steps > 1 else ({k: v[:, :0] for k, v in first.items()}, None)
        else:
            first, state = model(x[:, :1])
            rest, _ = model(x[:, 1:], state) if steps > 1 else ({k: v[:, :0] for k, v in first.items()}, None)
    bad = {k: tuple(v.shape) for k, v in whole.items() if tuple(v.shape[:2]) != (BATCH, steps)}
    assert not bad, f"{who}: forward() outputs must be (B, T, ...) = ({BATCH}, {steps}, ...); got {bad}"
    assert_finite(f"{who}: forward()", whole)
    for key in whole:
        joined = torch.cat([first[key], rest[key]], 1)
        diff = (joined - whole[key]).abs().max().item() if joined.shape == whole[key].shape else float("inf")
        assert diff <= 1e-5, (f"{who}: running {steps} steps at once and in two chunks with the state carried "
                              f"differ by {diff:.2e} in {key}; the model may keep state outside `state`")
    # keep: each name alone; an alias gives its canonical name; an unknown name raises
    with torch.no_grad(), calling(who, "step(keep=...)"):
        for name in names:
            got, _ = model.step(x_t, None, keep=[name])
            assert set(got) == {name}, f"{who}: step(keep=[{name!r}]) returns {sorted(got)}, not just {name!r}"
        aliases = {f"{m.group(1)}.-1" for n in names if (m := re.fullmatch(r"(\w+)\.(\d+)", n))}
        for alias in sorted(aliases):
            canonical = model.canonical(alias)
            if canonical != alias and canonical in names:
                got, _ = model.step(x_t, None, keep=[alias])
                assert set(got) == {canonical}, (f"{who}: step(keep=[{alias!r}]) returns {sorted(got)}, not the "
                                                 f"canonical name {canonical!r}")
        try:
            got, _ = model.step(x_t, None, keep=["no_such.output"])
        except (ValueError, KeyError, LookupError, ConfigError):
            pass
        else:
            raise AssertionError(f"{who}: step(keep=['no_such.output']) returns {sorted(got)} instead of raising "
                                 f"for an unknown output name (use self.resolve_keep(keep))")
    # training: gradients reach every parameter; detach_state cuts the graph
    model.train()
    model.zero_grad(set_to_none=True)
    with calling(who, "training (forward and backward of the sum of squares of all outputs)"):
        outputs, state = run()
        loss = squares(outputs)
        if loss.requires_grad:
            loss.backward()
    assert_gradients(who, model, " from the sum of squares of all outputs")
    with calling(who, "detach_state()"):
        cut = model.detach_state(state)
    attached = [path for path, t in tensors(cut, "state") if t.grad_fn is not None or t.requires_grad]
    assert not attached, f"{who}: detach_state() leaves {attached} attached to the autograd graph"
    parts = model.parts()
    assert isinstance(parts, Mapping) and all(isinstance(p, torch.nn.Module) for p in parts.values()), \
        f"{who}: parts() must map names to nn.Modules"


# ============================================================================== tasks
class TaskRun:
    """A task built inside a small run: its data spec, model, a batch (prepared) and the outputs."""

    def __init__(self, comp: Component, registry: Registry, n: int = BATCH):
        self.who = who = label(comp)
        fragment = {"data": example(comp, "data") or DEFAULT_RUN["data"],
                    "model": example(comp, "model") or DEFAULT_RUN["model"]}
        table = {"name": comp.name, **own_overrides(comp, "task")}
        check_options(comp, {k: v for k, v in table.items() if k != "name"})
        self.hint = default = "" if comp.example else (
            " (in the kit's default run: the built-in dataset 'synthetic' and model 'ladder'; give the task an "
            "example run if it needs another one)")
        try:
            self.dataset = registry.build("dataset", fragment["data"], path="data")
            self.spec = self.dataset.spec
            torch.manual_seed(0)
            self.model = build_model(fragment["model"], self.spec, registry)
            self.label = comp.name
            self.task = build_tasks({self.label: table}, self.spec, self.model, registry)[self.label]
        except ConfigError as exc:
            raise AssertionError(f"{who} cannot be built in its run{default}: {exc}") from exc
        assert isinstance(self.task, Task), f"{who} did not build a rladder.core.Task but {type(self.task).__name__}"
        self.template = copy.deepcopy(self.task)          # a fresh copy, before any metric update
        arrays = _first_split(self.dataset, who)
        with calling(who, "its run's dataset (to_batch)", self.hint):
            batch = self.dataset.to_batch(_stored_batch(arrays, n))
        self.n = batch["x"].shape[0]
        needs = self.task.needs()
        gen = torch.Generator().manual_seed(0)
        noisy = corrupt(batch, 0.0)
        if needs.noise:
            noisy["x"] = batch["x"] + 0.1 * torch.randn(batch["x"].shape, generator=gen)
        self.model.train()
        with calling(who, "prepare()", self.hint):
            self.batch = prepare({self.label: self.task}, self.model, noisy)
        with calling(who, "its run's model", self.hint):
            self.outputs = model_outputs(self.model, self.batch, self.spec)

    def fresh(self) -> Task:
        return copy.deepcopy(self.template)

    def detached(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({k: v.detach() for k, v in self.outputs.items()},
                {k: v.detach() if isinstance(v, Tensor) else v for k, v in self.batch.items()})


def metrics_of(task: Task, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor], who: str,
               hint: str = "") -> dict[str, float]:
    with calling(who, "reset_metrics()"):
        task.reset_metrics()
    with torch.no_grad(), calling(who, "update_metrics()", hint):
        task.update_metrics(outputs, batch)
    with calling(who, "compute_metrics()", hint):
        values = task.compute_metrics()
    assert isinstance(values, Mapping), f"{who}: compute_metrics() returned {type(values).__name__}, not a dict"
    bad = {k: type(v).__name__ for k, v in values.items() if not isinstance(v, int | float) or isinstance(v, bool)}
    assert not bad, f"{who}: compute_metrics() must give plain floats; got {bad}"
    return {k: float(v) for k, v in values.items()}


def _differences(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)} vs {b.get(k)}" for k in keys
            if k not in a or k not in b or not same_number(a[k], b[k])]


def check_task(comp: Component, registry: Registry) -> None:
    run = TaskRun(comp, registry)
    who, task, n = run.who, run.task, run.n
    # the loss: a finite scalar whose gradient reaches the model and is finite
    with calling(who, "loss()", run.hint):
        loss = task.loss(run.outputs, run.batch)
    assert isinstance(loss, Tensor) and loss.dim() == 0, \
        f"{who}: loss() must return a scalar tensor, got {type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}"
    assert torch.isfinite(loss), f"{who}: loss() is {loss.item()} on the kit's batch"
    params = [(name, p) for name, p in run.model.named_parameters() if p.requires_grad]
    assert loss.requires_grad, f"{who}: its loss has no gradient with respect to the model"
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    reached = [name for (name, _), g in zip(params, grads) if g is not None]
    bad = [name for (name, _), g in zip(params, grads) if g is not None and not torch.isfinite(g).all()]
    assert reached, f"{who}: its loss has no gradient with respect to any model parameter"
    assert not bad, f"{who}: the loss gives model parameter(s) {bad} a NaN or inf gradient"
    # metrics: two identical passes agree, reset forgets, headline names exist
    outputs, batch = run.detached()
    once = metrics_of(task, outputs, batch, who, run.hint)
    with torch.no_grad(), calling(who, "update_metrics()", run.hint):
        cut = lambda d: {k: v[: max(1, n // 2)] if isinstance(v, Tensor) and v.shape[:1] == (n,) else v  # noqa: E731
                         for k, v in d.items()}
        task.update_metrics(cut(outputs), cut(batch))
    again = metrics_of(task, outputs, batch, who, run.hint)
    diff = _differences(once, again)
    assert not diff, (f"{who}: the same batch after reset_metrics() gives other metrics ({'; '.join(diff)}); "
                      f"reset_metrics() must forget every accumulated value")
    headline = task.metrics()
    assert isinstance(headline, list | tuple) and all(isinstance(m, Metric) for m in headline), \
        f"{who}: metrics() must return a list of rladder.core.Metric"
    for m in headline:
        for key in filter(None, (m.name, m.baseline)):
            assert key in once, (f"{who}: metrics() names {key!r}, which compute_metrics() does not give "
                                 f"(it gives {sorted(once)})")
    # presentation
    with calling(who, "predictions()", run.hint):
        predictions = task.predictions(outputs)
    assert isinstance(predictions, Mapping), f"{who}: predictions() returned {type(predictions).__name__}, not a dict"
    for key, t in predictions.items():
        assert isinstance(t, Tensor) and tuple(t.shape[:2]) == (n, outputs_steps(outputs)), (
            f"{who}: prediction {key!r} must be a (B, T, ...) tensor, got {tuple(getattr(t, 'shape', ()))}")
        assert_finite(f"{who}: predictions()", {key: t})
    with calling(who, "next_input()", run.hint):
        step_input = task.next_input(predictions)
    if step_input is not None:
        want = (n, outputs_steps(outputs), *run.spec.step_shape)
        assert isinstance(step_input, Tensor) and tuple(step_input.shape) == want, (
            f"{who}: next_input() must be the model's input layout (B, T, *step_shape) = {want}, got "
            f"{tuple(getattr(step_input, 'shape', ()))}")
    # the device: everything the task makes follows its inputs
    _check_task_device(who, task, outputs, batch, loss.detach(), once)


def outputs_steps(outputs: Mapping[str, Tensor]) -> int:
    return next(iter(outputs.values())).shape[1]


def _check_task_device(who, task, outputs, batch, loss, metrics) -> None:
    # Not the real meta device: it holds no data, so torchmetrics (NaN checks, .item()) and any other
    # data-dependent step cannot run there. The stand-in runs the same ops on CPU data and raises as
    # CUDA does when a CPU tensor meets the batch's device (see rladder.core.testing.device).
    where = "loss()"
    try:
        with other.on_other_device(), torch.no_grad():
            other.move(task)
            moved_out, moved_batch = other.elsewhere(outputs), other.elsewhere(batch)
            moved_loss = task.loss(moved_out, moved_batch)
            where = "update_metrics()"
            task.reset_metrics()
            task.update_metrics(moved_out, moved_batch)
            where = "compute_metrics()"
            moved_metrics = task.compute_metrics()
            where = "predictions()"
            predictions = task.predictions(moved_out)
            where = "next_input()"
            task.next_input(predictions)
    except other.DeviceMismatch as exc:
        raise AssertionError(f"{who}: {where} does not follow the device of the batch (a tensor made without "
                             f"device=..., or a constant kept on the CPU): {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{who}: {where} fails when the batch and outputs are not on the CPU: "
                             f"{type(exc).__name__}: {exc}") from exc
    assert other.is_elsewhere(moved_loss), f"{who}: loss() returns a tensor on the CPU when the batch is elsewhere"
    assert same_number(float(moved_loss.inner), float(loss)), f"{who}: loss() differs on another device"
    diff = _differences(metrics, {k: float(v) for k, v in moved_metrics.items()})
    assert not diff, f"{who}: compute_metrics() differs on another device ({'; '.join(diff)})"
    on_cpu = [k for k, v in predictions.items() if isinstance(v, Tensor) and not other.is_elsewhere(v)]
    assert not on_cpu, f"{who}: predictions {on_cpu} are on the CPU when the outputs are elsewhere"


# ============================================================================== metrics over processes
def check_metrics_reduce(comp: Component, registry: Registry, world: int = 2, timeout: float = 120.0) -> None:
    """``update_metrics`` on 1/world of the batch in each of ``world`` gloo processes, then
    ``compute_metrics`` in each, must equal one process on the whole batch (tolerance 1e-5)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        raise Skipped("check_metrics_reduce forks worker processes; this platform cannot fork")
    run = TaskRun(comp, registry, n=2 * world)
    who = run.who
    outputs, batch = run.detached()
    expected = metrics_of(run.fresh(), outputs, batch, who)
    if not expected:
        return
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="rladder-reduce-") as folder:
        procs = [ctx.Process(target=_reduce_worker, args=(rank, world, folder, run, outputs, batch), daemon=True)
                 for rank in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        results = []
        for rank, p in enumerate(procs):
            path = os.path.join(folder, f"{rank}.json")
            if not os.path.exists(path):
                raise AssertionError(f"{who}: worker {rank} of {world} of the metrics-reduce check ended without a "
                                     f"result (exit code {p.exitcode}; a hang in a collective?)")
            with open(path) as fh:
                results.append(json.load(fh))
    for rank, res in enumerate(results):
        if "error" in res:
            raise AssertionError(f"{who}: update_metrics/compute_metrics fail in process {rank} of {world}: "
                                 f"{res['error']}")
        diff = _differences(res["metrics"], expected)
        assert not diff, (f"{who}: compute_metrics() in {world} processes, each updated with 1/{world} of a batch, "
                          f"differs from one process updated with the whole batch ({'; '.join(diff)}, in process "
                          f"{rank}); reduce plain tensors over processes with rladder.core.reduce_sum in "
                          f"compute_metrics()")


def _reduce_worker(rank: int, world: int, folder: str, run: TaskRun, outputs, batch) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    result: dict[str, Any]
    try:
        dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=60))
        n = run.n
        part = slice(rank * n // world, (rank + 1) * n // world)
        cut = lambda d: {k: v[part] if isinstance(v, Tensor) and v.shape[:1] == (n,) else v for k, v in d.items()}
        result = {"metrics": metrics_of(run.fresh(), cut(outputs), cut(batch), run.who)}
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        result = {"error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc()}
    with open(os.path.join(folder, f"{rank}.json.part"), "w") as fh:
        json.dump(result, fh)
    os.replace(os.path.join(folder, f"{rank}.json.part"), os.path.join(folder, f"{rank}.json"))
    try:
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    finally:
        os._exit(0)

"""Conformance kit for plugin authors: does a registered component behave like one?

Use it from any test suite::

    from rladder.core.testing import check_component, check_metrics_reduce
    def test_my_cell():
        check_component("encoder_cell", "my_cell")

or through the pytest plugin (installed with rladder, entry point ``pytest11``)::

    def test_conformance(rladder_component, rladder_conformance):
        rladder_conformance.check(rladder_component)

    $ pytest --rladder-plugin my-plugin     # one test per cell, decoder, dataset, model and task

Every failure is one sentence naming the component, its provider and what is wrong. A check that
cannot run here (a dataset whose files are missing) raises ``Skipped`` (pytest reports a skip).
Every kind: builds from default options (plus the option overrides of its ``example``, see
``rladder.registry.Component``); options round-trip (attrs -> dict -> TOML -> attrs); it has a description.

* cells and decoders: forward and backward on CPU for every probe shape the factory accepts (it
  rejects the others by raising ValueError or ``rladder.registry.ContractError``); output shape;
  no NaN or inf; every parameter gets a gradient; a decoder is stateless; inside a small ladder,
  T steps at once equal the same steps in two chunks with the state carried; same seed, same
  result. The partner cells in those ladders are defined here, so a failure is the component's own.
* datasets: a valid DataSpec; ``arrays(split)`` of every split has a common first axis;
  ``to_batch`` gives exactly the declared keys (plus optional ``label_mask``/``step_mask``) with the
  declared shapes, values in [0, 1] where declared, and follows the device of its input tensors;
  ``dummy_batch`` has the same keys and shapes.
* models (on each of the kit's probe data it accepts, or its example's data): a ``rladder.core.Model``;
  ``step`` returns declared names, ``(B, ...)``; ``forward`` gives ``(B, T, ...)``; T steps at once
  equal two chunks with the state carried (eval mode, 1e-5); ``step(keep=...)`` returns exactly
  the names kept, canonical for an alias (``encoder.-1``), and raises for an unknown name;
  ``detach_state`` cuts the graph; every parameter gets a gradient from the sum of squares of all outputs.
* tasks (in a small run: the component's example, else the built-in ``synthetic`` video data and
  a two-level ``ladder`` with heads ``frame``, ``class`` and ``recon``): the loss is a finite scalar
  whose gradient reaches the model; metrics round-trip (reset forgets; the same batch gives the
  same metrics); every ``metrics()`` name and baseline is computed; ``predictions()`` are finite
  ``(B, T, ...)`` tensors; ``next_input`` has the input's layout; loss, metrics and predictions
  follow the device of the batch (checked on a stand-in device, ``rladder.core.testing.device``);
  and, for a task with metrics, ``check_metrics_reduce``: two gloo processes, each updated with
  half of a batch, compute what one process computes on the whole batch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from rladder.registry import Registry, get_registry

from ..interfaces import DecoderCell, EncoderCell
from ..ladder import Level, RLadder
from . import components
from ._common import REJECTS, Skipped, assert_finite, assert_gradients, check_options, own_overrides, squares
from ._common import label as _label

PROBE_SHAPES: tuple[tuple[int, ...], ...] = ((3, 8, 8), (3, 16), (12,))
CHECKED_KINDS = ("encoder_cell", "decoder_cell", "dataset", "model", "task")
BATCH, STEPS = 3, 4

__all__ = ["CHECKED_KINDS", "PROBE_SHAPES", "REJECTS", "Skipped", "check", "check_component", "check_metrics_reduce",
           "conformance_targets"]


def conformance_targets(plugins: Iterable[str] | None = None, registry: Registry | None = None,
                        kinds: Iterable[str] = CHECKED_KINDS) -> list[tuple[str, str]]:
    """(kind, name) of every checked component (cells, decoders, datasets, models, tasks), or only
    those of the named plugins/distributions, or of the given kinds."""
    reg = registry or get_registry()
    wanted, kinds = set(plugins or ()), tuple(kinds)
    found = [(c.kind, c.name) for c in reg.components() if c.kind in kinds
             and (not wanted or c.plugin in wanted or c.distribution in wanted)]
    if wanted and not found:
        known = sorted({c.plugin for c in reg.components()})
        raise AssertionError(f"no {', '.join(kinds)} comes from {sorted(wanted)}; loaded plugins: {known}")
    return found


def check(target: tuple[str, str], registry: Registry | None = None) -> None:
    check_component(*target, registry=registry)


def check_component(kind: str, name: str, registry: Registry | None = None) -> None:
    """Every check of the kit for ``kind/name`` (for a task with metrics, ``check_metrics_reduce`` too)."""
    reg = registry or get_registry()
    comp = reg.get(kind, name)
    if kind == "encoder_cell":
        _check_encoder(comp, check_options(comp, own_overrides(comp, kind)))
    elif kind == "decoder_cell":
        _check_decoder(comp, check_options(comp, own_overrides(comp, kind)))
    elif kind == "dataset":
        components.check_dataset(comp, reg)
    elif kind == "model":
        components.check_model(comp, reg)
    elif kind == "task":
        components.check_task(comp, reg)
        components.check_metrics_reduce(comp, reg)
    else:
        raise AssertionError(f"the conformance kit checks {', '.join(CHECKED_KINDS)}, not {kind}")


def check_metrics_reduce(kind: str, name: str, registry: Registry | None = None, world: int = 2) -> None:
    """A task's metrics over ``world`` processes (gloo, forked): each process runs ``update_metrics`` on
    its share of a batch, then ``compute_metrics`` must give, in every process, what one process gives
    for the whole batch (relative and absolute tolerance 1e-5). A task that keeps plain tensors or
    Python numbers without ``rladder.core.reduce_sum`` fails it."""
    reg = registry or get_registry()
    if kind != "task":
        raise AssertionError(f"check_metrics_reduce checks tasks, not {kind}")
    components.check_metrics_reduce(reg.get(kind, name), reg, world=world)


# ------------------------------------------------------------------------------ partners
class ProbeEncoder(EncoderCell):
    """A minimal stateful cell: h' = tanh(W x + U d + h / 2), optional stride 2."""

    def __init__(self, in_shape, channels=4, stride=1, top_down=True):
        super().__init__()
        self.in_shape = tuple(in_shape)
        rank = len(in_shape) - 1
        if rank == 0:
            self.out_shape = (channels,)
            self.w = nn.Linear(in_shape[0], channels)
            self.u = nn.Linear(channels, channels) if top_down else None
        else:
            self.out_shape = (channels, *(n // stride for n in in_shape[1:]))
            conv = nn.Conv1d if rank == 1 else nn.Conv2d
            self.w = conv(in_shape[0], channels, 3, stride=stride, padding=1)
            self.u = conv(channels, channels, 1) if top_down else None

    def init_state(self, batch, like):
        return (like.new_zeros((batch, *self.out_shape)),)

    def forward(self, bottom_up, top_down_prev, state):
        a = self.w(bottom_up) + state[0] / 2
        if self.u is not None and top_down_prev is not None:
            a = a + self.u(top_down_prev)
        h = torch.tanh(a)
        return h, (h,)


class ProbeDecoder(DecoderCell):
    """A minimal decoder: d = tanh(e + V(d_above)) with V nearest up-sampling + 1x1 conv / linear."""

    def __init__(self, lateral_shape, top_down_shape=None):
        super().__init__()
        self.lateral_shape, self.top_down_shape = tuple(lateral_shape), top_down_shape
        self.v = None
        if top_down_shape is not None:
            if len(top_down_shape) == 1:
                self.v = nn.Linear(top_down_shape[0], int(torch.tensor(lateral_shape).prod()))
            else:
                conv = nn.Conv1d if len(lateral_shape) == 2 else nn.Conv2d
                self.v = conv(top_down_shape[0], lateral_shape[0], 1)

    def forward(self, lateral, top_down):
        if self.v is None:
            return torch.tanh(lateral)
        if len(self.top_down_shape) == 1:
            u = self.v(top_down).view(lateral.shape)
        else:
            up = nn.functional.interpolate(top_down, size=lateral.shape[2:], mode="nearest")
            u = self.v(up)
        return torch.tanh(lateral + u)


# ------------------------------------------------------------------------------ helpers
def _sequence(shape, seed=0) -> Tensor:
    return torch.rand(BATCH, STEPS, *shape, generator=torch.Generator().manual_seed(seed))


def _chunked_equal(label: str, ladder: RLadder, x: Tensor) -> None:
    ladder.eval()
    with torch.no_grad():
        whole, s_whole = ladder(x)
        first, s1 = ladder(x[:, :1])
        rest, s2 = ladder(x[:, 1:], s1)
    for key in whole:
        joined = torch.cat([first[key], rest[key]], 1)
        diff = (joined - whole[key]).abs().max().item()
        assert diff <= 1e-5, (f"{label}: running {STEPS} steps at once and in two chunks with the state carried "
                              f"differ by {diff:.2e} in {key}; the cell may keep state outside `state`")
    ladder.train()


def _build(comp, options, **context):
    torch.manual_seed(0)
    return comp.factory(options, **context)


# ------------------------------------------------------------------------------ encoder cells
def _check_encoder(comp, options) -> None:
    label = _label(comp)
    accepted = []
    for shape in PROBE_SHAPES:
        try:
            cell = _build(comp, options, in_shape=shape, top_down=True)
        except REJECTS:
            continue
        accepted.append(shape)
        assert isinstance(cell, EncoderCell), f"{label} did not build an EncoderCell but {type(cell).__name__}"
        assert tuple(cell.in_shape) == shape, f"{label}: in_shape {cell.in_shape} != {shape}"
        out_shape = tuple(cell.out_shape)
        x = _sequence(shape)
        # forward and backward through a one-level ladder (the decoder output feeds back)
        ladder = RLadder([Level(cell, ProbeDecoder(out_shape))], input_shape=shape)
        with torch.no_grad():
            got = tuple(ladder(x)[0]["encoder.0"].shape[2:])
        assert got == out_shape, f"{label}: output shape {got} != declared out_shape {out_shape}"
        _run_ladder(label, ladder, cell, x)
        # without the decoder-to-encoder link
        plain = _build(comp, options, in_shape=shape, top_down=False)
        out, _ = RLadder([Level(plain, None)], input_shape=shape, decoder=False)(x)
        assert out["encoder.0"].shape == (BATCH, STEPS, *out_shape), f"{label}: top_down=False changes the shape"
        assert_finite(label, out)
        # same seed, same cell; a deep copy (as DDP and EMA teachers make) behaves the same
        twin = _build(comp, options, in_shape=shape, top_down=True)
        s = cell.init_state(BATCH, x)
        d = torch.zeros(BATCH, *out_shape)
        with torch.no_grad():
            a, _ = cell(x[:, 0], d, s)
            b, _ = twin(x[:, 0], d, twin.init_state(BATCH, x))
            c, _ = copy.deepcopy(cell)(x[:, 0], d, s)
        assert torch.allclose(a, b) and torch.allclose(a, c), f"{label}: same seed or a deep copy gives other outputs"
    assert accepted, f"{label} accepts none of the probe shapes {PROBE_SHAPES}"


# ------------------------------------------------------------------------------ decoder cells
def _check_decoder(comp, options) -> None:
    label = _label(comp)
    accepted = []
    for shape in PROBE_SHAPES:
        try:
            top = _build(comp, options, lateral_shape=shape, top_down_shape=None)
        except REJECTS:
            continue
        accepted.append(shape)
        assert isinstance(top, DecoderCell), f"{label} did not build a DecoderCell but {type(top).__name__}"
        x = _sequence(shape)
        # at the top of a one-level ladder
        ladder = RLadder([Level(ProbeEncoder(shape, channels=shape[0]), top)], input_shape=shape)
        _run_ladder(label, ladder, top, x)
        # below a level of vector shape, and below a spatial level of half the size
        above_shapes = [(5,)] + ([(5, *(n // 2 for n in shape[1:]))] if len(shape) > 1 else [])
        for above in above_shapes:
            try:
                cell = _build(comp, options, lateral_shape=shape, top_down_shape=above)
            except REJECTS:
                continue
            e, d_above = torch.rand(BATCH, *shape), torch.rand(BATCH, *above)
            y1, y2 = cell(e, d_above), cell(e, d_above)
            assert y1.shape == (BATCH, *shape), f"{label}: output shape {tuple(y1.shape[1:])} != lateral {shape}"
            assert torch.equal(y1, y2), f"{label} is not stateless: two calls with the same input differ"
            ladder = RLadder([Level(ProbeEncoder(shape, channels=shape[0]), cell),
                              Level(_upper_encoder(shape, above), ProbeDecoder(above))], input_shape=shape)
            _run_ladder(label, ladder, cell, x)
    assert accepted, f"{label} accepts none of the probe shapes {PROBE_SHAPES}"


def _run_ladder(label: str, ladder: RLadder, cell: nn.Module, x: Tensor) -> None:
    outputs, _ = ladder(x)
    assert_finite(label, outputs)
    loss = squares(outputs)
    if loss.requires_grad:  # a parameter-free cell in a parameter-free ladder has nothing to train
        loss.backward()
    assert_gradients(label, cell)
    _chunked_equal(label, ladder, x)


def _upper_encoder(shape, above) -> EncoderCell:
    if len(above) > 1:
        return ProbeEncoder(shape, channels=above[0], stride=2)
    inner = ProbeEncoder((shape[0],), channels=above[0])
    return inner if len(shape) == 1 else _Pooled(inner, shape)


class _Pooled(EncoderCell):
    """A vector probe cell behind a global average of a spatial input."""

    def __init__(self, inner: ProbeEncoder, in_shape):
        super().__init__()
        self.inner, self.in_shape, self.out_shape = inner, tuple(in_shape), inner.out_shape

    def init_state(self, batch, like):
        return self.inner.init_state(batch, like)

    def forward(self, bottom_up, top_down_prev, state):
        return self.inner(bottom_up.mean(dim=tuple(range(2, bottom_up.dim()))), top_down_prev, state)

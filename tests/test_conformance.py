"""The conformance kit, run over every built-in cell and decoder, and shown to catch bad ones."""

from __future__ import annotations

import attrs
import pytest
import torch
from torch import nn

from rladder.core import EncoderCell
from rladder.core.testing import check_component, conformance_targets
from rladder.registry import Component, Registry, hookimpl


def test_conformance(rladder_component, rladder_conformance):
    """One test per built-in encoder_cell and decoder_cell (fixture from the pytest11 plugin)."""
    rladder_conformance.check(rladder_component)


def test_every_builtin_is_a_target():
    targets = conformance_targets(["rladder"])
    assert {("encoder_cell", n) for n in ("conv_lstm", "conv_gru", "lstm", "gru", "conv", "linear", "input")} <= set(targets)
    assert {("decoder_cell", "vanilla"), ("decoder_cell", "learned")} <= set(targets)


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

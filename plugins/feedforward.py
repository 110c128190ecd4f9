"""Stateless encoder cells: the input pass-through and plain conv / fully connected layers.

Spec section 2.1 (stateless layer): ``e_l(t) = act(Norm(W_l * e_{l-1}(t) + U_l * d_l(t-1)))``,
with ``U_l`` a 1x1 conv (a linear map for vectors). These carry no state; in the paper's
models most levels are such layers and only some are recurrent.
"""

from __future__ import annotations

import attrs
from torch import Tensor

from rladder.core import CellState, EncoderCell
from rladder.core import layers as L
from rladder.registry import Component, hookimpl, odd, option, positive



@attrs.frozen
class InputOptions:
    """The input level takes no options."""


class InputCell(EncoderCell):
    """The bottom level of a Ladder: e_0(t) = x_t, the (possibly corrupted) observed data."""

    def __init__(self, options: InputOptions, in_shape, top_down: bool = False):
        super().__init__()
        self.in_shape = self.out_shape = tuple(in_shape)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        return bottom_up, ()


@attrs.frozen
class ConvOptions:
    channels: int = option(32, help="Output channels.", validator=positive)
    kernel_size: int = option(3, help="Kernel size (odd).", validator=odd)
    stride: int = option(1, help="Stride: down-samples the bottom-up input by this factor.", validator=positive)
    pool: int = option(1, help="Max-pool the bottom-up input by this factor first.", validator=positive)
    norm: L.Norm = option("group", help="Normalisation of the pre-activation.")
    activation: L.Activation = option("relu", help="Nonlinearity.")


class ConvCell(EncoderCell):
    """A stateless 1-D or 2-D conv layer (rank chosen by the input shape)."""

    def __init__(self, options: ConvOptions, in_shape, top_down: bool = True):
        super().__init__()
        if len(in_shape) < 2:
            raise ValueError(f"encoder_cell 'conv' needs a spatial input (C, L) or (C, H, W), got {in_shape}; "
                             f"use 'linear' for vectors")
        o = options
        rank = L.rank_of(in_shape)
        self.in_shape = tuple(in_shape)
        self.out_shape = (o.channels, *L.pooled_shape(in_shape, o.pool, o.stride)[1:])
        self.pool = o.pool
        self.bottom_up = L.conv(rank, in_shape[0], o.channels, o.kernel_size, o.stride)      # W_l
        self.top_down = L.conv(rank, o.channels, o.channels, 1, bias=False) if top_down else None  # U_l
        self.norm = L.norm(o.norm, o.channels, rank, L.default_groups(o.channels))
        self.act = L.activation(o.activation)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        a = self.bottom_up(L.pool(bottom_up, self.pool))
        if self.top_down is not None and top_down_prev is not None:
            a = a + self.top_down(top_down_prev)
        return self.act(self.norm(a)), ()


@attrs.frozen
class LinearOptions:
    units: int = option(128, help="Output size.", validator=positive)
    reduce: L.Reduce = option("avg", help="How a spatial input becomes a vector: avg, max (global) or flatten.")
    norm: L.Norm = option("layer", help="Normalisation of the pre-activation.")
    activation: L.Activation = option("relu", help="Nonlinearity.")


class LinearCell(EncoderCell):
    """A stateless fully connected layer; a spatial input is pooled or flattened first."""

    def __init__(self, options: LinearOptions, in_shape, top_down: bool = True):
        super().__init__()
        o = options
        self.in_shape, self.out_shape = tuple(in_shape), (o.units,)
        self.reduce = o.reduce
        self.bottom_up = _linear(L.vector_size(in_shape, o.reduce), o.units)
        self.top_down = _linear(o.units, o.units, bias=False) if top_down else None
        self.norm = L.norm(o.norm, o.units, 0)
        self.act = L.activation(o.activation)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        a = self.bottom_up(L.to_vector(bottom_up, self.reduce))
        if self.top_down is not None and top_down_prev is not None:
            a = a + self.top_down(top_down_prev)
        return self.act(self.norm(a)), ()


def _linear(n_in: int, n_out: int, bias: bool = True):
    from torch import nn
    return nn.Linear(n_in, n_out, bias=bias)


@hookimpl
def rladder_components():
    return [
        Component("encoder_cell", "input", InputCell, InputOptions,
                  "Pass-through bottom level: e_0(t) = x_t (for a Ladder-style input level)."),
        Component("encoder_cell", "conv", ConvCell, ConvOptions,
                  "Stateless 1-D/2-D conv layer; strided or pooled for down-sampling."),
        Component("encoder_cell", "linear", LinearCell, LinearOptions,
                  "Stateless fully connected layer; pools or flattens a spatial input."),
    ]

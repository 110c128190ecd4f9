"""Fully connected recurrent encoder cells: LSTM and GRU (paper section 2: "LSTM or GRU cells").

The bottom-up input (pooled or flattened if spatial) and d_l(t-1) are concatenated with the
hidden state, as in spec section 2.1; gate pre-activations are normalised per sample (layer
norm per gate by default), which keeps the signal from shrinking level after level.
State layouts: LSTM ``(h, c)``, GRU ``(h,)``, each ``(B, units)``; the output e_l(t) is h.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from rladder.core import CellState, EncoderCell
from rladder.core import layers as L
from rladder.registry import Component, hookimpl, option, positive



@attrs.frozen
class LSTMOptions:
    units: int = option(128, help="Hidden units (the output size).", validator=positive)
    reduce: L.Reduce = option("avg", help="How a spatial input becomes a vector: avg, max (global) or flatten.")
    norm: L.Norm = option("layer", help="Normalisation of each gate's pre-activation ('layer' = per gate).")
    forget_bias: float = option(1.0, help="Initial forget-gate bias.")


class LSTMCell(EncoderCell):
    """[i, f, o, g] = Norm(W [x; d; h]) + b;  c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')."""

    def __init__(self, options: LSTMOptions, in_shape, top_down: bool = True):
        super().__init__()
        o = options
        self.in_shape, self.out_shape = tuple(in_shape), (o.units,)
        self.reduce, self.units = o.reduce, o.units
        n_in = L.vector_size(in_shape, o.reduce) + (o.units if top_down else 0) + o.units
        self.gates = nn.Linear(n_in, 4 * o.units, bias=o.norm == "none")
        self.norm = L.norm(o.norm, 4 * o.units, 0, groups=4)
        L.set_forget_bias(self.norm if o.norm != "none" else self.gates, o.units, o.forget_bias)

    def init_state(self, batch: int, like: Tensor) -> CellState:
        zeros = like.new_zeros((batch, self.units))
        return zeros, zeros

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        h, c = state
        parts = [L.to_vector(bottom_up, self.reduce)] + ([top_down_prev] if top_down_prev is not None else []) + [h]
        i, f, o, g = self.norm(self.gates(torch.cat(parts, 1))).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


@attrs.frozen
class GRUOptions:
    units: int = option(128, help="Hidden units (the output size).", validator=positive)
    reduce: L.Reduce = option("avg", help="How a spatial input becomes a vector: avg, max (global) or flatten.")
    norm: L.Norm = option("layer", help="Normalisation of the gate pre-activations ('layer' = per gate).")


class GRUCell(EncoderCell):
    """[r, z] = s(Wx + Uh);  n = tanh(Wx_n + r * U_n h);  h' = (1 - z) n + z h (x = [bottom-up; d])."""

    def __init__(self, options: GRUOptions, in_shape, top_down: bool = True):
        super().__init__()
        o = options
        self.in_shape, self.out_shape = tuple(in_shape), (o.units,)
        self.reduce, self.units = o.reduce, o.units
        n_in = L.vector_size(in_shape, o.reduce) + (o.units if top_down else 0)
        self.w = nn.Linear(n_in, 3 * o.units)
        self.u = nn.Linear(o.units, 3 * o.units, bias=False)
        self.norm_w = L.norm(o.norm, 3 * o.units, 0, groups=3)
        self.norm_u = L.norm(o.norm, 3 * o.units, 0, groups=3)

    def init_state(self, batch: int, like: Tensor) -> CellState:
        return (like.new_zeros((batch, self.units)),)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        (h,) = state
        parts = [L.to_vector(bottom_up, self.reduce)] + ([top_down_prev] if top_down_prev is not None else [])
        wx = self.norm_w(self.w(torch.cat(parts, 1)))
        uh = self.norm_u(self.u(h))
        return L.gru_update(wx, uh, h, self.units, dim=1)


@hookimpl
def rladder_components():
    return [
        Component("encoder_cell", "lstm", LSTMCell, LSTMOptions,
                  "Fully connected LSTM with normalised gates; pools a spatial input."),
        Component("encoder_cell", "gru", GRUCell, GRUOptions,
                  "Fully connected GRU with normalised gates; pools a spatial input."),
    ]

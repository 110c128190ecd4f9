"""Convolutional recurrent encoder cells: ConvLSTM and ConvGRU, 1-D or 2-D by the input shape.

Spec section 2.1: the bottom-up input e_{l-1}(t) (optionally max-pooled), d_l(t-1) and the
hidden state are concatenated along channels and convolved once into the gate
pre-activations, normalised per gate (GroupNorm with one group per gate: without it the signal
shrinks about 5x per level at initialisation, see docs/cpu-training-notes in the project notes).
Layouts: input ``(B, C_in, *S)``, d_l(t-1) and h ``(B, C, *S')``, LSTM state ``(h, c)``, GRU
state ``(h,)``; S' = S / pool. The output e_l(t) is h.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor

from rladder.core import CellState, EncoderCell
from rladder.core import layers as L
from rladder.registry import Component, hookimpl, odd, option, positive



@attrs.frozen
class ConvRecurrentOptions:
    channels: int = option(32, help="Hidden channels (the output channels).", validator=positive)
    kernel_size: int = option(3, help="Kernel size of the gate convolution (odd).", validator=odd)
    pool: int = option(1, help="Max-pool the bottom-up input by this factor first (down-sampling).",
                       validator=positive)
    norm: L.Norm = option("group", help="Normalisation of the gate pre-activations ('group' = one group per gate).")
    forget_bias: float = option(1.0, help="Initial forget-gate bias (LSTM only).")


class _ConvRecurrent(EncoderCell):
    gates_per_unit = 4

    def __init__(self, options: ConvRecurrentOptions, in_shape, top_down: bool = True):
        super().__init__()
        if len(in_shape) < 2:
            raise ValueError(f"a convolutional recurrent cell needs a spatial input (C, L) or (C, H, W), "
                             f"got {in_shape}; use 'lstm' or 'gru' for vectors")
        o = options
        self.rank = L.rank_of(in_shape)
        self.in_shape = tuple(in_shape)
        self.out_shape = (o.channels, *L.pooled_shape(in_shape, o.pool)[1:])
        self.channels, self.pool, self.kernel_size = o.channels, o.pool, o.kernel_size
        self.n_in = in_shape[0] + (o.channels if top_down else 0)

    def init_state(self, batch: int, like: Tensor) -> CellState:
        zeros = like.new_zeros((batch, *self.out_shape))
        return (zeros,) * (2 if self.gates_per_unit == 4 else 1)

    def _inputs(self, bottom_up: Tensor, top_down_prev: Tensor | None) -> list[Tensor]:
        x = L.pool(bottom_up, self.pool)
        return [x] if top_down_prev is None else [x, top_down_prev]


class ConvLSTMCell(_ConvRecurrent):
    """[i, f, o, g] = Norm(Conv([x; d; h]));  c' = s(f) c + s(i) tanh(g);  h' = s(o) tanh(c')."""

    def __init__(self, options: ConvRecurrentOptions, in_shape, top_down: bool = True):
        super().__init__(options, in_shape, top_down)
        o = options
        self.gates = L.conv(self.rank, self.n_in + o.channels, 4 * o.channels, o.kernel_size, bias=o.norm == "none")
        self.norm = L.norm(o.norm, 4 * o.channels, self.rank, groups=4)
        L.set_forget_bias(self.norm if o.norm != "none" else self.gates, o.channels, o.forget_bias)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        h, c = state
        pre = self.norm(self.gates(torch.cat(self._inputs(bottom_up, top_down_prev) + [h], 1)))
        i, f, o, g = pre.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRUCell(_ConvRecurrent):
    """[r, z] = s(Conv_x([x; d]) + Conv_h(h));  n = tanh(Conv_x,n + r * Conv_h,n(h));  h' = (1-z) n + z h."""

    gates_per_unit = 3

    def __init__(self, options: ConvRecurrentOptions, in_shape, top_down: bool = True):
        super().__init__(options, in_shape, top_down)
        o = options
        self.w = L.conv(self.rank, self.n_in, 3 * o.channels, o.kernel_size)
        self.u = L.conv(self.rank, o.channels, 3 * o.channels, o.kernel_size, bias=False)
        self.norm_w = L.norm(o.norm, 3 * o.channels, self.rank, groups=3)
        self.norm_u = L.norm(o.norm, 3 * o.channels, self.rank, groups=3)

    def forward(self, bottom_up: Tensor, top_down_prev: Tensor | None, state: CellState):
        (h,) = state
        wx = self.norm_w(self.w(torch.cat(self._inputs(bottom_up, top_down_prev), 1)))
        uh = self.norm_u(self.u(h))
        return L.gru_update(wx, uh, h, self.channels, dim=1)


@hookimpl
def rladder_components():
    return [
        Component("encoder_cell", "conv_lstm", ConvLSTMCell, ConvRecurrentOptions,
                  "Convolutional LSTM (1-D or 2-D by input shape) with normalised gates."),
        Component("encoder_cell", "conv_gru", ConvGRUCell, ConvRecurrentOptions,
                  "Convolutional GRU (1-D or 2-D by input shape) with normalised gates."),
    ]

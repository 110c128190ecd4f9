"""A plain tanh RNN encoder cell on vectors, registered through entry-point group `rladder`."""

from __future__ import annotations

import attrs
import torch
from torch import nn

from rladder.core import EncoderCell
from rladder.registry import Component, hookimpl, option


@attrs.frozen
class ToyRNNOptions:
    units: int = option(16, help="Hidden units.")


class ToyRNN(EncoderCell):
    """h' = tanh(W [x; d] + U h); a spatial input is averaged first."""

    def __init__(self, options: ToyRNNOptions, in_shape, top_down: bool = True):
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), (options.units,)
        self.w = nn.Linear(in_shape[0] + (options.units if top_down else 0), options.units)
        self.u = nn.Linear(options.units, options.units, bias=False)

    def init_state(self, batch, like):
        return (like.new_zeros(batch, self.out_shape[0]),)

    def forward(self, bottom_up, top_down_prev, state):
        x = bottom_up.mean(dim=tuple(range(2, bottom_up.dim()))) if bottom_up.dim() > 2 else bottom_up
        if top_down_prev is not None:
            x = torch.cat([x, top_down_prev], 1)
        h = torch.tanh(self.w(x) + self.u(state[0]))
        return h, (h,)


@hookimpl
def rladder_components():
    return [Component("encoder_cell", "toy_rnn", ToyRNN, ToyRNNOptions, "A plain tanh RNN (third-party example).")]

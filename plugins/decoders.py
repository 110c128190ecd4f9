"""Stateless Ladder decoder cells, eq. (3): d_l(t) = g_l(e_l(t), d_{l+1}(t)).

Both cells first bring the top-down signal to level l's shape and normalise it
(spec section 2.2): ``u = Norm(V_l d_{l+1})``; at the top level, where there is no d_{l+1},
``u = Norm(e_L)`` (``top_input = "lateral"``, as the Ladder code feeds BN(h_L)) or ``u = 0``
(``"zero"``, which reduces the vanilla combinator to d = w e + b).

* ``vanilla``: the Gaussian combinator of Ladder networks (spec section 7.2), ten parameters
  per unit (per channel for conv levels), initialised a2 = a7 = 1 and the others 0:
  ``mu = a1 s(a2 u + a3) + a4 u + a5``,  ``v = a6 s(a7 u + a8) + a9 u + a10``,
  ``d = (e - mu) v + mu``  (``stable_v`` passes v through a sigmoid, as in Tagger).
* ``learned``: ``d = act(W [e, u, e*u] + b)`` with W a 1x1 conv (linear for vectors), the
  learned (AMLP-style) combinator of spec section 2.2 (b).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from rladder.core import DecoderCell
from rladder.core import layers as L
from rladder.registry import Component, hookimpl, odd, option


TopInput = Literal["lateral", "zero"]


@attrs.frozen
class CombinatorOptions:
    """Options every combinator has: how d_{l+1} becomes u (resampling, normalisation) and u at the top."""

    norm: L.Norm = option("layer", help="Normalisation of u (no affine parameters).")
    upsample: L.Upsample = option("nearest", help="Spatial up-sampling of d_{l+1}: nearest + conv, or transpose conv.")
    kernel_size: int = option(3, help="Kernel of the conv after nearest up-sampling (odd).", validator=odd)
    from_vector: L.FromVector = option("linear", help="Vector level above -> spatial level: linear or broadcast.")
    top_input: TopInput = option("lateral", help="u at the top level: Norm(e_L) ('lateral') or 0 ('zero').")


@attrs.frozen
class VanillaOptions(CombinatorOptions):
    stable_v: bool = option(False, help="Pass v through a sigmoid (Tagger's gauss_stable_v).")
    init: Literal["ladder", "balanced"] = option(
        "ladder", help="ladder: a2 = a7 = 1, others 0 (d = 0 at first, and no gradient reaches the levels above "
                       "until the combinator has learned to use u); balanced: also a4 = 1 and a10 = 0.5, so "
                       "d = (e + u) / 2 at first and both paths carry gradient from the start.")


@attrs.frozen
class LearnedOptions(CombinatorOptions):
    combine_kernel: int = option(1, help="Kernel of the combining conv (odd; 1 = per position).", validator=odd)
    activation: L.Activation = option("relu", help="Nonlinearity of the output.")


class _Combinator(DecoderCell):
    """Shared part: u = Norm(V d_{l+1}) (or Norm(e) / 0 at the top)."""

    def __init__(self, options, lateral_shape, top_down_shape=None):
        super().__init__()
        self.lateral_shape = tuple(lateral_shape)
        self.top_down_shape = tuple(top_down_shape) if top_down_shape is not None else None
        self.rank = L.rank_of(self.lateral_shape)
        self.resample = None
        if self.top_down_shape is not None:
            self.resample = L.Resample(self.top_down_shape, self.lateral_shape, options.upsample,
                                     options.kernel_size, options.from_vector)
        self.top_input = options.top_input
        self.norm = L.norm(options.norm, self.lateral_shape[0], self.rank, affine=False)

    def top_down_signal(self, lateral: Tensor, top_down: Tensor | None) -> Tensor | None:
        if self.resample is not None:
            if top_down is None:
                raise ValueError("this decoder cell was built with a level above; it needs d_{l+1}")
            return self.norm(self.resample(top_down))
        return self.norm(lateral) if self.top_input == "lateral" else None

    def per_channel(self, p: Tensor) -> Tensor:
        """(C,) -> (1, C, 1, ...) to broadcast over batch and space."""
        return p.view(1, -1, *([1] * self.rank))


class VanillaCombinator(_Combinator):
    """The Ladder's Gaussian combinator (see module docstring), 10 parameters per channel."""

    def __init__(self, options: VanillaOptions, lateral_shape, top_down_shape=None):
        super().__init__(options, lateral_shape, top_down_shape)
        init = torch.zeros(10, self.lateral_shape[0])
        init[1] = init[6] = 1.0          # a2 = a7 = 1, all other a's = 0 (spec section 7.2)
        if options.init == "balanced":
            init[3], init[9] = 1.0, 0.5  # mu = u, v = 1/2: d = (e + u) / 2
        self.a = nn.Parameter(init)
        self.stable_v = options.stable_v

    def forward(self, lateral: Tensor, top_down: Tensor | None) -> Tensor:
        u = self.top_down_signal(lateral, top_down)
        a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 = (self.per_channel(p) for p in self.a)
        if u is None:
            u = torch.zeros((), dtype=lateral.dtype, device=lateral.device)
        mu = a1 * torch.sigmoid(a2 * u + a3) + a4 * u + a5
        v = a6 * torch.sigmoid(a7 * u + a8) + a9 * u + a10
        if self.stable_v:
            v = torch.sigmoid(v)
        return (lateral - mu) * v + mu


class LearnedCombinator(_Combinator):
    """d = act(W [e, u, e*u] + b) (see module docstring)."""

    def __init__(self, options: LearnedOptions, lateral_shape, top_down_shape=None):
        super().__init__(options, lateral_shape, top_down_shape)
        c = self.lateral_shape[0]
        n_in = 3 * c if (self.resample is not None or options.top_input == "lateral") else c
        if self.rank == 0:
            self.combine = nn.Linear(n_in, c)
        else:
            self.combine = L.conv(self.rank, n_in, c, options.combine_kernel)
        self.act = L.activation(options.activation)

    def forward(self, lateral: Tensor, top_down: Tensor | None) -> Tensor:
        u = self.top_down_signal(lateral, top_down)
        x = lateral if u is None else torch.cat([lateral, u, lateral * u], 1)
        return self.act(self.combine(x))


@hookimpl
def rladder_components():
    return [
        Component("decoder_cell", "vanilla", VanillaCombinator, VanillaOptions,
                  "Ladder Gaussian combinator, 10 parameters per unit/channel (Ladder init)."),
        Component("decoder_cell", "learned", LearnedCombinator, LearnedOptions,
                  "Learned combinator: act(Conv1x1([e, u, e*u])) with u the resampled d_{l+1}."),
    ]

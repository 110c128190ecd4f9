"""Heads: stateless read-outs of a named ladder output, applied at every step.

* ``classifier``: global average over spatial axes, then a linear map to ``out`` logits,
  ``(B, C, *S) -> (B, out)`` (vectors ``(B, D) -> (B, out)``).
* ``readout``: a 1x1 convolution to ``out`` channels that keeps the spatial layout,
  ``(B, C, *S) -> (B, out, *S)`` (vectors: a linear map). The bottom readout of the paper's
  models (a 1x1 conv to the input channels; tasks apply the sigmoid or softmax).

``detach=True`` stops the gradient into the ladder (the probe readout of the paper's Fig. 4).
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import Tensor, nn

from rladder.registry import option

from .interfaces import Shape


@attrs.frozen
class HeadSpec:
    """A head: its name, the output it reads, its kind and its output size."""

    name: str = option(help="Output name: the head's result is 'heads.<name>'.")
    source: str = option(help="Output it reads: 'encoder.<l>' or 'decoder.<l>' (negative l counts from the top).")
    kind: Literal["classifier", "readout"] = option("readout", help="classifier (pool + linear) or readout (1x1 conv).")
    out: int | Literal["classes", "input"] = option(
        "input", help="Output size: a number, 'classes' (the dataset's classes) or 'input' (input channels).")
    detach: bool = option(False, help="Stop the gradient into the ladder (a probe).")


class Head(nn.Module):
    """A classifier or readout head (see module docstring)."""

    def __init__(self, kind: str, source: str, in_shape: Shape, out: int, detach: bool = False):
        super().__init__()
        self.kind, self.source, self.detach, self.out = kind, source, detach, out
        dims = len(in_shape) - 1
        channels = in_shape[0]
        if kind == "classifier" or dims == 0:
            self.layer = nn.Linear(channels, out)
            self.pool_dims = tuple(range(2, 2 + dims)) if kind == "classifier" else ()
        else:
            self.layer = (nn.Conv1d if dims == 1 else nn.Conv2d)(channels, out, kernel_size=1)
            self.pool_dims = ()
        self.out_shape: Shape = (out,) if (kind == "classifier" or dims == 0) else (out, *in_shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        if self.detach:
            x = x.detach()
        if self.pool_dims:
            x = x.mean(dim=self.pool_dims)
        return self.layer(x)

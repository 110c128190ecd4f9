"""V_l: resampling d_{l+1} (level l+1's shape) to level l's shape (registers nothing).

Spec section 2.2: ``u_l = Norm(V_l d_{l+1})`` with V_l the transpose of the encoder's
W_{l+1}: an up-sampling conv between spatial levels, a linear map from a vector level to a
spatial one, a linear map between vector levels.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from . import _layers as L

Upsample = Literal["nearest", "transpose"]
FromVector = Literal["linear", "broadcast"]


class Resample(nn.Module):
    """(B, *src) -> (B, *dst). ``src`` is the level above, ``dst`` this level.

    * spatial -> spatial: sizes must grow by whole factors (or stay); ``nearest`` up-samples and
      applies a ``kernel_size`` conv, ``transpose`` uses a transposed conv with kernel = stride = factor;
    * vector -> spatial: ``linear`` maps to C*prod(S) values (spatial layout learned),
      ``broadcast`` maps to C channels and repeats them over space (transpose of global pooling);
    * vector -> vector: a linear map.
    """

    def __init__(self, src: tuple[int, ...], dst: tuple[int, ...], upsample: Upsample = "nearest",
                 kernel_size: int = 3, from_vector: FromVector = "linear"):
        super().__init__()
        self.src, self.dst = tuple(src), tuple(dst)
        r_src, r_dst = L.rank_of(src), L.rank_of(dst)
        self.mode = "linear"
        if r_src == 0:
            if r_dst == 0 or from_vector == "linear":
                self.layer = nn.Linear(src[0], math.prod(dst))
            else:
                self.mode = "broadcast"
                self.layer = nn.Linear(src[0], dst[0])
            return
        if r_dst != r_src:
            raise ValueError(f"cannot resample the level above, shape {src}, to this level's shape {dst}: "
                             f"the spatial ranks differ")
        factors = []
        for a, b in zip(src[1:], dst[1:]):
            if b % a:
                raise ValueError(f"cannot up-sample the level above, shape {src}, to this level's shape {dst}: "
                                 f"{b} is not a whole multiple of {a}")
            factors.append(b // a)
        if len(set(factors)) > 1:
            raise ValueError(f"unequal up-sampling factors {factors} from {src} to {dst}")
        f = factors[0]
        self.factor = f
        if f > 1 and upsample == "transpose":
            self.mode = "transpose"
            cls = nn.ConvTranspose1d if r_src == 1 else nn.ConvTranspose2d
            self.layer = cls(src[0], dst[0], kernel_size=f, stride=f)
        else:
            self.mode = "nearest"
            self.layer = L.conv(r_src, src[0], dst[0], kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "linear":
            return self.layer(x).view(x.shape[0], *self.dst)
        if self.mode == "broadcast":
            y = self.layer(x)
            return y.view(*y.shape, *([1] * (len(self.dst) - 1))).expand(x.shape[0], *self.dst)
        if self.mode == "nearest" and self.factor > 1:
            x = nn.functional.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.layer(x)

"""Building blocks for cell and decoder plugins: convolutions, normalisations, activations,
pooling, shape arithmetic, and ``Resample`` (V_l: bringing d_{l+1} to level l's shape).

Public: plugins use them as ``from rladder.core import layers as L`` (``L.conv``, ``L.norm``,
``L.Resample``, ...). Shapes follow `rladder.core.interfaces`: a level's shape is (C, H, W),
(C, L) or (D,); its spatial rank is 2, 1 or 0.
"""

from __future__ import annotations

from typing import Literal

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["group", "layer", "batch", "none"]
Activation = Literal["relu", "leaky_relu", "tanh", "elu", "none"]
Reduce = Literal["avg", "max", "flatten"]


def rank_of(shape: tuple[int, ...]) -> int:
    """Spatial rank: 2 for (C, H, W), 1 for (C, L), 0 for vectors (D,)."""
    if not 1 <= len(shape) <= 3:
        raise ValueError(f"unsupported level shape {shape}: expected (C, H, W), (C, L) or (D,)")
    return len(shape) - 1


def conv(rank: int, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, bias: bool = True) -> nn.Module:
    """'same'-padded Conv1d/Conv2d (odd kernels)."""
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd to keep sizes, got {kernel_size}")
    cls = {1: nn.Conv1d, 2: nn.Conv2d}[rank]
    return cls(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)


def norm(kind: Norm, channels: int, rank: int, groups: int = 1, affine: bool = True) -> nn.Module:
    """Normalisation of (B, C, *S) pre-activations.

    ``group`` (default almost everywhere) and ``layer`` use per-sample statistics, so results do
    not depend on the rest of the batch: chunked runs, evaluation and data-parallel training
    agree exactly. ``batch`` is the Ladder papers' choice (running statistics at evaluation).
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return (nn.BatchNorm1d if rank <= 1 else nn.BatchNorm2d)(channels, affine=affine)
    g = 1 if kind == "layer" else groups
    if channels % g:
        raise ValueError(f"{channels} channels cannot be split into {g} normalisation groups")
    return nn.GroupNorm(g, channels, affine=affine)


def default_groups(channels: int) -> int:
    """Groups for a plain layer's GroupNorm: at most 8, with at least 8 channels in each group.

    Few channels per group turn GroupNorm into instance norm, which on sparse (occluded) maps
    throws away how much of a pattern is present; with 8+ channels per group it does not.
    """
    return next(g for g in (8, 4, 2, 1) if channels % g == 0 and channels // g >= 8 or g == 1)


def activation(name: Activation) -> nn.Module:
    return {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.1), "tanh": nn.Tanh(), "elu": nn.ELU(),
            "none": nn.Identity()}[name]


def to_vector(x: Tensor, how: Reduce) -> Tensor:
    """(B, C, *S) -> (B, C) by global average or max, or (B, C*prod(S)) by flattening."""
    if x.dim() == 2:
        return x
    if how == "flatten":
        return x.flatten(1)
    dims = tuple(range(2, x.dim()))
    return x.mean(dims) if how == "avg" else x.amax(dims)


def vector_size(shape: tuple[int, ...], how: Reduce) -> int:
    if len(shape) == 1 or how != "flatten":
        return shape[0]
    return int(torch.tensor(shape).prod())


def pool(x: Tensor, factor: int) -> Tensor:
    """Max-pool spatial axes by ``factor`` (identity for 1)."""
    if factor == 1:
        return x
    return (F.max_pool1d if x.dim() == 3 else F.max_pool2d)(x, factor)


def pooled_shape(shape: tuple[int, ...], factor: int, stride: int = 1) -> tuple[int, ...]:
    """Shape after pooling by ``factor`` and a conv of ``stride``; sizes must divide exactly."""
    step = factor * stride
    for n in shape[1:]:
        if n % step:
            raise ValueError(f"spatial size {n} of input {shape} is not divisible by the down-sampling "
                             f"factor {step} of this level (pool {factor} x stride {stride})")
    return (shape[0], *(n // step for n in shape[1:]))


def gru_update(wx: Tensor, uh: Tensor, h: Tensor, units: int, dim: int):
    """Shared GRU arithmetic on pre-activations split along ``dim`` into [r, z, n]."""
    wr, wz, wn = wx.split(units, dim)
    ur, uz, un = uh.split(units, dim)
    r, z = torch.sigmoid(wr + ur), torch.sigmoid(wz + uz)
    n = torch.tanh(wn + r * un)
    h = (1 - z) * n + z * h
    return h, (h,)


def set_forget_bias(module: nn.Module, units: int, value: float) -> None:
    """Gate order [i, f, o, g]: set the bias of the f block (the norm's shift, or the linear bias)."""
    bias = getattr(module, "bias", None)
    if bias is not None:
        with torch.no_grad():
            bias[units:2 * units].fill_(value)


# --------------------------------------------------------------------------- V_l: resampling d_{l+1}
# Spec section 2.2: ``u_l = Norm(V_l d_{l+1})`` with V_l the transpose of the encoder's W_{l+1}: an
# up-sampling conv between spatial levels, a linear map from a vector level to a spatial one, a
# linear map between vector levels.

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
        r_src, r_dst = rank_of(src), rank_of(dst)
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
            self.layer = conv(r_src, src[0], dst[0], kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "linear":
            return self.layer(x).view(x.shape[0], *self.dst)
        if self.mode == "broadcast":
            y = self.layer(x)
            return y.view(*y.shape, *([1] * (len(self.dst) - 1))).expand(x.shape[0], *self.dst)
        if self.mode == "nearest" and self.factor > 1:
            x = nn.functional.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.layer(x)

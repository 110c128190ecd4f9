"""RTagger (paper section 4.1, spec sections 5-6) and the ladders it and its baselines use.

``rtagger`` is Tagger (Greff et al. 2016) with its feed-forward Ladder replaced by any registered
model: K groups share one inner model, folded into the batch (B*K samples). At every step (an
iteration on a static image, or a video frame) each group k receives the Tagger inputs of spec
6.2, made from the previous step's estimates, and outputs a new reconstruction z_k and mask
logits a_k (pi = softmax over the groups). The inner model's state (s_l and d_l of every level)
is carried from step to step. With a stateless ladder without decoder-to-encoder links
(``grouping_ladder`` with ``recurrent = false, feedback = false``) it is the original Tagger.

One step, with x~ (B, C, *S) the input (noisy in training), z (B, K, C, *S) and m (B, K, 1, *S)
the previous estimates (z = z_init and m = softmax_k(N(0, s_m^2)), s_m = ``mask_init_std``, before the first step,
z_init plus a random constant per group and sample with ``z_init_spread``; in evaluation the initial masks and
offsets come from a generator seeded with ``init_seed``), v the variance:

    dz = m (x~ - z)                                   # m = softmax_k(a / T) of the previous step (T = 1: Tagger);
                                                      # input_masks = "posterior": m <- softmax_k(log m - l_k)
    l_k = sum_c 1/2 log(s^2 + v^2) + (z_k - x~)^2 / (2 (s^2 + v^2)),  L(m) = softmax_k(-l)   (s = noise_std)
    h = ReLU(Norm(W [z, dz, m, L(m)]) + b)            # a 1x1 conv to `hidden` channels, per group
    outputs, state = inner.step(h, state)             # B*K samples
    z_k = c1 Norm(W_z d_0) + b1                        # c1 = 1, b1 = 0 at first (per channel)
    a_k = c2 Norm(W_m d_0),  pi = softmax_k(a)         # c2 a scalar, 1 at first
    class logits of group k = Linear(pool(e_top)): classes + 1, the last one "none"

v = exp(asinh(w)) (Tagger's ``exp_inv_sinh``, positive), w learned from 1 (v = 1 + sqrt 2; ``variance_init``). ``norm = "batch"``
normalises with the current batch's statistics over (B*K, *S), in training and evaluation alike,
as Tagger does; ``"none"`` leaves it out (a bias instead).

Outputs, ``(B, T, ...)`` once unrolled over T steps, all read-outs for tasks:

* ``heads.recon``: (B, T, K, C, *S) the reconstructions z_k (for video: the next frame's);
* ``heads.mask_logits``: (B, T, K, 1, *S) the logits a_k; pi = softmax over the K axis;
* ``heads.class``: (B, T, K, classes + 1) per-group class logits, "none" last (data with classes);
* ``heads.variance``: (B, T) the learned variance v.

``grouping_ladder`` returns a LadderSpec: a conv encoder with one resolution per ``channels``
entry (the first at full size, each next one halved by a stride-2 conv, followed by a conv-LSTM
when ``recurrent``), an LSTM (``recurrent``) or linear top, and a decoder cell at every level.
It is RTagger's inner RLadder, Tagger's feed-forward Ladder (``recurrent = false,
feedback = false``) and, without decoder and with ``class_head``, the ConvNet baseline.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any, Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rladder.core import DataSpec, Head, LadderSpec, Model, build_model
from rladder.core import layers as L
from rladder.registry import Component, hookimpl, option, positive, structure


def exp_inv_sinh(w: Tensor) -> Tensor:
    """Tagger's positive parameterisation of the variance: exp(asinh(w)) = w + sqrt(w^2 + 1)."""
    return torch.exp(torch.asinh(w))


def tagger_inputs(x: Tensor, z: Tensor, m: Tensor, noise_std: float, v: Tensor, posterior: bool = False) -> Tensor:
    """Spec 6.2, continuous inputs: [z, m (x~ - z), m, L(m)] along channels.

    ``x`` (B, C, *S), ``z`` (B, K, C, *S), ``m`` (B, K, 1, *S), ``v`` a scalar tensor;
    returns (B, K, 2C + 2, *S). With ``posterior`` the masks in the first two terms are replaced by the
    posterior softmax_k(log m - l_k), m weighted by how well each group's z explains x~ (the E-step of
    Neural EM, Greff et al. 2017), so that a group sees x~ where it explains it best."""
    x = x.unsqueeze(1)
    var = noise_std ** 2 + v ** 2
    nlp = (0.5 * torch.log(var) + (z - x) ** 2 / (2 * var)).sum(2, keepdim=True)   # -log p per group
    if posterior:
        m = torch.softmax(torch.log(m.clamp_min(1e-12)) - nlp, dim=1)
    return torch.cat([z, m * (x - z), m, torch.softmax(-nlp, dim=1)], 2)


def _smooth(x: Tensor, radius: int) -> Tensor:
    """Two box blurs of ``radius`` over the spatial axes of (N, C, *S) (borders: the mean of what is inside)."""
    pool = F.avg_pool1d if x.dim() == 3 else F.avg_pool2d
    for _ in range(2):
        x = pool(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)
    return x


class BatchStats(nn.Module):
    """Normalisation over (N, *S) per channel with the current batch's statistics, always (Tagger's BN)."""

    def __init__(self, channels: int, affine: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, None, None, self.weight, self.bias, training=True, eps=1e-5)


@attrs.frozen
class TaggerState:
    """What RTagger carries to the next step: the inner model's state (over B*K samples), the
    reconstructions z (B, K, C, *S) and masks m (B, K, 1, *S), and the steps run so far."""

    inner: Any
    z: Tensor
    m: Tensor
    steps: int = 0


def _default_ladder() -> dict[str, Any]:
    return {"name": "grouping_ladder"}


@attrs.frozen
class RTaggerOptions:
    groups: int = option(3, help="K: the number of groups (copies of the inner model).", validator=positive)
    ladder: dict[str, Any] = option(factory=_default_ladder, kind="model",
                                    help="The inner model: any model component, {name = ..., <options>}; it must "
                                         "produce decoder_output (at the input's resolution) and class_source.")
    hidden: int = option(32, help="Channels of the projection of the Tagger inputs (the inner model's input).",
                         validator=positive)
    noise_std: float = option(0.2, help="The input noise's std in L(m) (set it to train.input_noise).")
    z_init: float = option(0.5, help="The reconstructions before the first step.")
    z_init_spread: float = option(0.0, help="0: z = z_init everywhere (Tagger). s > 0: each group of each sample starts "
                                            "from its own constant z_init + s U(-1/2, 1/2), so L(m) already tells "
                                            "the groups apart by content at the first step (docs/table4.md, Mechanics).")
    variance_init: float = option(1 + 2 ** 0.5, help="The learned variance v at the start (Tagger: exp(asinh(1)) = "
                                                     "1 + sqrt 2, which makes L(m) nearly uniform while v is large).",
                                  validator=positive)
    norm: Literal["batch", "none"] = option("batch", help="Normalisation of the input projection and the two "
                                                          "output projections (batch: Tagger's).")
    decoder_output: str = option("decoder.0", help="Inner output the reconstructions and masks are read from.")
    class_source: str = option("encoder.-1", help="Inner output the per-group class logits are read from.")
    init_seed: int = option(0, help="Seed of the initial masks in evaluation (training draws them afresh).")
    mask_init_std: float = option(1.0, help="Std of the Gaussian logits of the initial masks (Tagger: 1); larger "
                                            "gives sharper random initial masks, smaller ones (0.02 in the `cpu` "
                                            "recipe) show every group nearly the whole image (docs/table4.md).")
    mask_scale_init: float = option(1.0, help="Initial value of c2, the scale of the mask logits (Tagger: 1).")
    input_mask_temperature: float = option(1.0, help="The masks m fed to the next step are softmax_k(a / T) (Tagger: "
                                                     "T = 1, the cost's pi). T < 1 sharpens them, so a group sees "
                                                     "less of the pixels other groups own.", validator=positive)
    input_masks: Literal["predicted", "posterior"] = option(
        "predicted", help="The masks m in the inputs m (x~ - z) and m: predicted (Tagger: the previous step's "
                          "softmax_k(a / T)) or posterior (those masks times each group's likelihood of x~, "
                          "renormalised over the groups: Neural EM's E-step).")
    mask_init_smooth: int = option(0, help="Box-blur radius (pixels) of the initial mask logits, applied twice and "
                                           "rescaled to mask_init_std: 0 gives Tagger's independent pixels, r > 0 "
                                           "spatially smooth random blobs.")


class RTagger(Model):
    """K groups of one inner model (see module docstring)."""

    def __init__(self, options: RTaggerOptions, spec: DataSpec):
        super().__init__()
        o = self.options = options
        if len(spec.step_shape) < 2:
            raise ValueError(f"RTagger needs spatial steps (C, H, W) or (C, L), got {spec.step_shape}")
        self.input_shape = tuple(spec.step_shape)
        channels, spatial = spec.step_shape[0], tuple(spec.step_shape[1:])
        rank = len(spatial)
        self.classes = spec.num_classes
        inner_spec = DataSpec(spec.modality, (o.hidden, *spatial), spec.seq_len,
                              {"x": f"(B*K,{o.hidden},...) projected Tagger inputs"},
                              num_classes=spec.num_classes + 1 if spec.num_classes else 0, static=spec.static)
        self.inner = build_model(o.ladder, inner_spec)
        for mod in self.inner.modules():           # Tagger's BN: the current batch's statistics, always
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.track_running_stats, mod.running_mean, mod.running_var = False, None, None
                mod.num_batches_tracked = None
        self.dec_name = self.inner.canonical(o.decoder_output)
        self.top_name = self.inner.canonical(o.class_source)
        self.reads = {self.dec_name} | ({self.top_name} if self.classes else set())
        shapes = self._probe(o.hidden, spatial)
        dec_shape = shapes[self.dec_name]
        if tuple(dec_shape[1:]) != spatial:
            raise ValueError(f"the inner model's {o.decoder_output} has shape {dec_shape}, not the input's "
                             f"resolution {spatial}; read a full-resolution decoder output (option decoder_output)")
        batch = o.norm == "batch"
        self.project = L.conv(rank, 2 * channels + 2, o.hidden, 1, bias=not batch)
        self.in_norm = BatchStats(o.hidden, affine=False) if batch else nn.Identity()
        self.in_bias = nn.Parameter(torch.zeros(o.hidden)) if batch else None
        self.to_recon = L.conv(rank, dec_shape[0], channels, 1, bias=not batch)
        self.recon_norm = BatchStats(channels, affine=True) if batch else nn.Identity()
        self.to_mask = L.conv(rank, dec_shape[0], 1, 1, bias=not batch)
        self.mask_norm = BatchStats(1, affine=False) if batch else nn.Identity()
        self.mask_scale = nn.Parameter(torch.tensor(float(o.mask_scale_init)))
        self.variance_w = nn.Parameter(torch.tensor(math.sinh(math.log(o.variance_init))))   # exp(asinh(w)) = v
        self.classify = Head("classifier", o.class_source, shapes[self.top_name], spec.num_classes + 1) \
            if self.classes else None
        self.shapes = shapes

    def _probe(self, hidden: int, spatial: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        try:
            self.inner.resolve_keep(self.reads)
        except ValueError as exc:
            raise ValueError(f"the inner model cannot serve RTagger: {exc}") from None
        was = self.inner.training
        self.inner.eval()
        with torch.no_grad():
            out, _ = self.inner.step(torch.zeros(2, hidden, *spatial), None, keep=self.reads)
        self.inner.train(was)
        return {k: tuple(v.shape[1:]) for k, v in out.items()}

    # ------------------------------------------------------------------ the Model protocol
    def output_names(self) -> list[str]:
        names = ["heads.recon", "heads.mask_logits", "heads.variance"]
        return names + (["heads.class"] if self.classes else [])

    def variance(self) -> Tensor:
        return exp_inv_sinh(self.variance_w)

    def init_state(self, batch: int, like: Tensor) -> TaggerState:
        o = self.options
        shape = (batch, o.groups, 1, *self.input_shape[1:])
        z = like.new_full((batch, o.groups, *self.input_shape), o.z_init)
        gen = None if self.training else torch.Generator(device=like.device).manual_seed(o.init_seed)
        noise = torch.randn(shape, device=like.device, dtype=z.dtype, generator=gen)
        if o.z_init_spread:
            offset = torch.rand((batch, o.groups), device=like.device, dtype=z.dtype, generator=gen) - 0.5
            z = z + o.z_init_spread * offset.view(batch, o.groups, *([1] * len(self.input_shape)))
        if o.mask_init_smooth:
            noise = _smooth(noise.flatten(0, 1), o.mask_init_smooth).view(shape)
            noise = noise / noise.flatten(2).std(2).clamp(min=1e-6).view(*shape[:2], *([1] * (len(shape) - 2)))
        m = torch.softmax(o.mask_init_std * noise, dim=1)
        return TaggerState(self.inner.init_state(batch * o.groups, like), z, m, 0)

    def step(self, x_t: Tensor, state: TaggerState | None = None,
             keep: Collection[str] | None = None) -> tuple[dict[str, Tensor], TaggerState]:
        self.check_input(x_t, static=True)
        keep = self.resolve_keep(keep)
        b, k = x_t.shape[0], self.options.groups
        if state is None:
            state = self.init_state(b, x_t)
        v = self.variance()
        feats = tagger_inputs(x_t, state.z, state.m, self.options.noise_std, v,
                              self.options.input_masks == "posterior").flatten(0, 1)   # (B*K, 2C+2, *S)
        h = self.in_norm(self.project(feats))
        if self.in_bias is not None:
            h = h + self.in_bias.view(1, -1, *([1] * (h.dim() - 2)))
        out, inner = self.inner.step(torch.relu(h), state.inner, keep=self.reads)
        d = out[self.dec_name]
        z = self.recon_norm(self.to_recon(d)).unflatten(0, (b, k))
        a = (self.mask_scale * self.mask_norm(self.to_mask(d))).unflatten(0, (b, k))
        outputs = {"heads.recon": z, "heads.mask_logits": a, "heads.variance": v.expand(b)}
        if self.classify is not None:
            outputs["heads.class"] = self.classify(out[self.top_name]).unflatten(0, (b, k))
        if keep is not None:
            outputs = {name: t for name, t in outputs.items() if name in keep}
        m = torch.softmax(a / self.options.input_mask_temperature, dim=1)
        return outputs, TaggerState(inner, z, m, state.steps + 1)

    def parts(self) -> dict[str, nn.Module]:
        parts = dict(self.inner.parts())
        parts.update({"tagger.input": self.project, "heads.recon": self.to_recon, "heads.mask": self.to_mask})
        if self.classify is not None:
            parts["heads.class"] = self.classify
        return parts

    def summary(self) -> list[str]:
        o = self.options
        c = self.input_shape[0]
        lines = [f"  RTagger: K = {o.groups} groups folded into the batch; Tagger inputs {2 * c + 2} channels -> "
                 f"{o.hidden} (norm {o.norm}); reads {self.dec_name} {self.shapes[self.dec_name]}"
                 + (f" and {self.top_name} {self.shapes[self.top_name]} -> {self.classes} classes + none"
                    if self.classes else ""),
                 f"  inner model: {o.ladder.get('name')}"]
        return lines + ["  " + line for line in self.inner.summary()]


# --------------------------------------------------------------------------- the ladders
def _default_decoder() -> dict[str, Any]:
    return {"name": "vanilla", "stable_v": True}


@attrs.frozen
class GroupingLadderOptions:
    channels: tuple[int, ...] = option((32, 64, 64), help="Channels per resolution: the first at the input's "
                                                          "size, each next one halved by a stride-2 conv.",
                                       validator=positive)
    top: int = option(128, help="Units of the top level.", validator=positive)
    recurrent: bool = option(True, help="A conv-LSTM after each down-sampling conv and an LSTM top (RTagger's "
                                        "RLadder); false: conv layers and a linear top (Tagger's Ladder, the ConvNet).")
    decoder: bool = option(True, help="A decoder cell at every level (false: the encoder alone, the ConvNet).")
    feedback: bool = option(True, help="Decoder-to-encoder links (false for Tagger's feed-forward Ladder).")
    decoder_cell: dict[str, Any] = option(factory=_default_decoder, kind="decoder_cell",
                                          help="Decoder cell of every level (Tagger's gauss_stable_v by default).")
    class_head: bool = option(False, help="Add head 'class' (classes) on the top encoder output (the ConvNet).")
    norm: L.Norm = option("group", help="Normalisation of every conv level.")
    top_reduce: L.Reduce = option("max", help="How the top level pools the last conv map: max, avg or flatten.")


def grouping_ladder(o: GroupingLadderOptions, spec: DataSpec) -> LadderSpec:
    levels = []
    for i, c in enumerate(o.channels):
        levels.append({"name": "conv", "channels": c, "stride": 1 if i == 0 else 2, "norm": o.norm})
        if o.recurrent and i > 0:
            levels.append({"name": "conv_lstm", "channels": c, "norm": o.norm})
    levels.append({"name": "lstm" if o.recurrent else "linear", "units": o.top, "reduce": o.top_reduce, "norm": o.norm})
    decoder = {"norm": o.norm, **o.decoder_cell}
    heads = [{"name": "class", "source": "encoder.-1", "kind": "classifier", "out": "classes"}] if o.class_head else []
    return structure(LadderSpec, {"levels": [{"encoder": e, "decoder": dict(decoder) if o.decoder else None}
                                             for e in levels],
                                  "heads": heads, "decoder": o.decoder, "feedback": o.decoder and o.feedback})


# small sizes for the conformance kit (rladder.core.testing) and the tasks' example runs
SMALL_LADDER = {"channels": [4, 4], "top": 8}
SMALL_RTAGGER = {"hidden": 4, "ladder": {"name": "grouping_ladder", **SMALL_LADDER}}


@hookimpl
def rladder_components():
    return [
        Component("model", "rtagger", RTagger, RTaggerOptions,
                  "RTagger (paper 4.1): K groups of any inner model iterate on Tagger inputs; masks, "
                  "reconstructions, classes.", example={"model": SMALL_RTAGGER}),
        Component("model", "grouping_ladder", grouping_ladder, GroupingLadderOptions,
                  "Conv ladder for grouping: RTagger's RLadder, Tagger's Ladder or the ConvNet baseline.",
                  example={"model": SMALL_LADDER}),
    ]

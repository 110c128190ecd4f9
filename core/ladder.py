"""The RLadder engine: eqs. (1)-(3) of Prémont-Schwarz et al. (NIPS 2017), section 2.

At every step t, information flows bottom-up through the encoder cells, then top-down through
the stateless decoder cells; each decoder output d_l(t) is fed to the encoder of the same level
at step t+1 (the decoder-to-encoder link), and d_l(0) = 0. The same engine serves temporal
modelling (one step per frame or time step), iterative inference on a static input (the same
input at every step) and RTagger (a wrapper calls `step` with inputs built from the previous
step's outputs). Layouts are documented in `rladder.core.interfaces`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Literal, NamedTuple

import attrs
import torch
from torch import Tensor, nn

from rladder.registry import option

from .interfaces import CellState, DecoderCell, EncoderCell, Model, Shape


@attrs.frozen
class FeedbackSpec:
    """How d_l(t-1) enters encoder l at step t (the decoder-to-encoder link, paper Fig. 1a).

    The encoder receives ``gate_l * scale * Norm(d_l(t-1))`` (``detach`` cuts the gradient through
    the link). With ``gate = "scalar"`` or ``"channel"`` the gate is learned, one value per level
    or per channel, starting at ``gate_init``; a gate starting at 0 makes the RLadder start as its
    own no-feedback ablation and learn how much of the links to use.
    """

    norm: Literal["none", "layer"] = option("none", help="Normalise d_l(t-1) per sample before the encoder "
                                                         "(layer: zero mean, unit variance over the level's units).")
    gate: Literal["none", "scalar", "channel"] = option("none", help="A learned gate on the link: none, one scalar "
                                                                      "per level, or one value per channel.")
    gate_init: float = option(0.0, help="Initial value of a learned gate.")
    scale: float = option(1.0, help="A fixed factor on the link.")
    detach: bool = option(False, help="Stop the gradient through the link (d_l(t-1) as a constant input).")


class FeedbackLink(nn.Module):
    """d_l(t-1) -> what encoder l receives, as set by a ``FeedbackSpec`` (identity by default)."""

    def __init__(self, spec: FeedbackSpec, shape: Shape):
        super().__init__()
        self.spec = spec
        self.gate = None
        if spec.gate != "none":
            size = shape[0] if spec.gate == "channel" else 1
            self.gate = nn.Parameter(torch.full((size,), float(spec.gate_init)))
        self.rank = len(shape) - 1

    def forward(self, d: Tensor) -> Tensor:
        s = self.spec
        if s.detach:
            d = d.detach()
        if s.norm == "layer":
            dims = tuple(range(1, d.dim()))
            d = (d - d.mean(dims, keepdim=True)) * torch.rsqrt(d.var(dims, keepdim=True, unbiased=False) + 1e-5)
        if s.scale != 1.0:
            d = d * s.scale
        if self.gate is not None:
            d = d * self.gate.view(1, -1, *([1] * self.rank))
        return d


class _ScaleGradient(torch.autograd.Function):
    """Identity forward; the gradient is multiplied by ``scale`` on the way back."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale.to(grad.dtype), None


class GradientGate(nn.Module):
    """Passes e_l(t) to decoder l unchanged and scales the gradient the decoder sends back into the
    encoder by ``scale`` (a buffer the trainer sets each step, ``train.decoder_grad_ramp_steps``).

    At scale 0 the encoder is trained by the costs that reach it without the decoder (the
    classification at the top) while the decoders and heads get their full gradient; the forward
    pass, and so the model, is the same at every scale. ``active`` is False once the scale stays 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(()), persistent=False)
        self.active = False

    def set(self, scale: float) -> None:
        self.scale.fill_(scale)
        self.active = scale != 1.0

    def forward(self, x: Tensor) -> Tensor:
        return _ScaleGradient.apply(x, self.scale) if self.active and torch.is_grad_enabled() else x


class _SwitchGradient(torch.autograd.Function):
    """Identity forward; on the way back the gradient passes only while ``switch.open`` (read at
    backward time, so one graph can be back-propagated once closed and once open)."""

    @staticmethod
    def forward(ctx, x: Tensor, switch: GradientSwitch) -> Tensor:
        ctx.switch = switch
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return (grad if ctx.switch.open else None), None


class GradientSwitch(nn.Module):
    """Passes d_l(t-1) to the link unchanged; the gradient flows back through it into the decoders
    only while ``open`` (``train.link_gradient_tasks``: the trainer closes it for the backward pass
    of the tasks that may not train the decoders through the links, and opens it for the others).

    The forward pass is the same either way. ``active`` is False unless the trainer uses it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.open = True
        self.active = False

    def forward(self, x: Tensor) -> Tensor:
        return _SwitchGradient.apply(x, self) if self.active and torch.is_grad_enabled() else x


class LadderState(NamedTuple):
    """Everything carried from step t-1 to step t: s_l(t-1) per level and d_l(t-1) per level.

    ``decoder`` is empty when the ladder has no decoder or no decoder-to-encoder links.
    ``steps`` counts the steps run so far (0 for a fresh state). A named tuple, so that
    torch.compile traces the step and checkpoints hold plain tensors.
    """

    encoder: tuple[CellState, ...]
    decoder: tuple[Tensor, ...]
    steps: int = 0

    def detach(self) -> LadderState:
        """The same state cut from the autograd graph (truncated back-propagation through time)."""
        return LadderState(tuple(tuple(s.detach() for s in cell) for cell in self.encoder),
                           tuple(d.detach() for d in self.decoder), self.steps)

    def map(self, fn) -> LadderState:
        """Apply ``fn`` to every tensor (for example to reorder or repeat the batch)."""
        return LadderState(tuple(tuple(fn(s) for s in cell) for cell in self.encoder),
                           tuple(fn(d) for d in self.decoder), self.steps)


class Level(nn.Module):
    """One level: its encoder cell, (unless the ladder has no decoder) its decoder cell, and
    (when the ladder has decoder-to-encoder links) the link that carries d_l(t-1) to the encoder."""

    def __init__(self, encoder: EncoderCell, decoder: DecoderCell | None, feedback: FeedbackLink | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.feedback = feedback


class RLadder(Model):
    """A recurrent Ladder built from levels (bottom first) and heads.

    ``levels[l].encoder`` maps e_{l-1}(t) (the input for l = 0) to e_l(t); ``levels[l].decoder``
    maps (e_l(t), d_{l+1}(t)) to d_l(t). Heads read any named output at every step:
    ``encoder.<l>``, ``decoder.<l>`` (l may be negative: -1 is the top level) and produce
    ``heads.<name>``.

    Switches for the paper's ablations (Table 1): ``decoder=False`` removes the decoder
    (the "hierarchical RNN"); ``feedback=False`` removes the decoder-to-encoder links.
    """

    def __init__(self, levels: Sequence[Level], heads: Mapping[str, nn.Module] | None = None, *,
                 input_shape: Shape, decoder: bool = True, feedback: bool = True):
        super().__init__()
        if not levels:
            raise ValueError("an RLadder needs at least one level")
        self.levels = nn.ModuleList(levels)
        self.heads = nn.ModuleDict(dict(heads or {}))
        self.head_sources = {name: _canonical(getattr(h, "source", ""), len(levels)) for name, h in self.heads.items()}
        self.input_shape = tuple(input_shape)
        self.has_decoder = decoder
        self.feedback = decoder and feedback
        self.decoder_grad = GradientGate()
        self.link_grad = GradientSwitch()
        for l, level in enumerate(self.levels):
            if decoder and level.decoder is None:
                raise ValueError(f"level {l} has no decoder cell but the ladder has a decoder")
            if self.feedback and level.feedback is None:
                level.feedback = FeedbackLink(FeedbackSpec(), level.encoder.out_shape)

    # ------------------------------------------------------------------ shapes and names
    @property
    def shapes(self) -> list[Shape]:
        """out_shape of every level, bottom first."""
        return [tuple(level.encoder.out_shape) for level in self.levels]

    def output_names(self) -> list[str]:
        names = [f"encoder.{l}" for l in range(len(self.levels))]
        if self.has_decoder:
            names += [f"decoder.{l}" for l in range(len(self.levels))]
        return names + [f"heads.{h}" for h in self.heads]

    def parts(self) -> dict[str, nn.Module]:
        """The named parts whose outputs and gradients the trainer's instruments watch: every level's
        ``encoder.<l>``, ``decoder.<l>`` and ``feedback.<l>`` (the link d_l(t-1) -> encoder l), and
        every ``heads.<name>``."""
        parts: dict[str, nn.Module] = {}
        for l, level in enumerate(self.levels):
            parts[f"encoder.{l}"] = level.encoder
            if level.decoder is not None and self.has_decoder:
                parts[f"decoder.{l}"] = level.decoder
            if level.feedback is not None and self.feedback:
                parts[f"feedback.{l}"] = level.feedback
        parts.update({f"heads.{name}": head for name, head in self.heads.items()})
        return parts

    def canonical(self, name: str) -> str:
        """``encoder.-1`` -> ``encoder.<L-1>``; other names unchanged."""
        return _canonical(name, len(self.levels))

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int, like: Tensor) -> LadderState:
        """s_l(0) from each cell and d_l(0) = 0 (paper section 2)."""
        enc = tuple(level.encoder.init_state(batch, like) for level in self.levels)
        dec = ()
        if self.feedback:
            dec = tuple(like.new_zeros((batch, *shape)) for shape in self.shapes)
        return LadderState(enc, dec, 0)

    # ------------------------------------------------------------------ one step
    def step(self, x_t: Tensor, state: LadderState | None = None,
             keep: Collection[str] | None = None) -> tuple[dict[str, Tensor], LadderState]:
        """One bottom-up and one top-down pass. ``x_t``: ``(B, *input_shape)``.

        Returns the outputs of this step (every level's e_l(t) and d_l(t) and every head, or only
        the names in ``keep``) and the state for step t+1.
        """
        self.check_input(x_t, static=True)
        keep = self.resolve_keep(keep)
        if state is None:
            state = self.init_state(x_t.shape[0], x_t)
        levels = self.levels
        enc_out: list[Tensor] = []
        enc_state: list[CellState] = []
        below = x_t
        for l, level in enumerate(levels):
            d_prev = level.feedback(self.link_grad(state.decoder[l])) if self.feedback else None
            # eqs. (1)-(2): s_l(t), e_l(t) = f_l(e_{l-1}(t), d_l(t-1), s_l(t-1))
            e_l, s_l = level.encoder(below, d_prev, state.encoder[l])
            enc_out.append(e_l)
            enc_state.append(s_l)
            below = e_l
        dec_out: list[Tensor] = []
        if self.has_decoder:
            above = None
            for l in reversed(range(len(levels))):
                # eq. (3): d_l(t) = g_l(e_l(t), d_{l+1}(t)); d_{L}(t) is absent at the top
                above = levels[l].decoder(self.decoder_grad(enc_out[l]), above)
                dec_out.append(above)
            dec_out.reverse()
        outputs: dict[str, Tensor] = {}
        for l, e_l in enumerate(enc_out):
            outputs[f"encoder.{l}"] = e_l
        for l, d_l in enumerate(dec_out):
            outputs[f"decoder.{l}"] = d_l
        for name, head in self.heads.items():
            key = f"heads.{name}"
            if keep is None or key in keep:
                outputs[key] = head(outputs[self.head_sources[name]])
        if keep is not None:
            outputs = {k: v for k, v in outputs.items() if k in keep}
        new_state = LadderState(tuple(enc_state), tuple(dec_out) if self.feedback else (), state.steps + 1)
        return outputs, new_state

    def summary(self) -> list[str]:
        """The levels (cells and output shapes), the ablation switches and the heads."""
        lines = [f"  {'level':<6}{'encoder':<16}{'output':<18}decoder"]
        for l, level in enumerate(self.levels):
            dec = type(level.decoder).__name__ if level.decoder is not None and self.has_decoder else "-"
            lines.append(f"  {l:<6}{type(level.encoder).__name__:<16}{str(tuple(level.encoder.out_shape)):<18}{dec}")
        switches = [] if self.has_decoder else ["no decoder"]
        if self.has_decoder and not self.feedback:
            switches.append("no decoder-to-encoder links")
        if switches:
            lines.append(f"  ablation: {', '.join(switches)}")
        for name, head in self.heads.items():
            lines.append(f"  head {name}: {head.kind} of {head.source} -> {tuple(head.out_shape)}")
        return lines


def _canonical(name: str, num_levels: int) -> str:
    part, _, idx = name.partition(".")
    if part in ("encoder", "decoder") and idx.lstrip("-").isdigit():
        i = int(idx)
        if i < 0:
            i += num_levels
        return f"{part}.{i}"
    return name

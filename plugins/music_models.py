"""The models of Table 3 (paper section 3.2, spec section 4.2): the 18-layer music RLadder, its
ablations, and the marginal LSTM, all predicting the next step's 88 notes as independent Bernoulli
logits (heads.notes, (B, 1, 88)).

``music_rladder``: 1-D convolutions along pitch over a (1, 88) step; 12 stateless conv layers,
5 conv-LSTMs (R) and a fully connected LSTM on top (channels c1..c4 = ``channels``):

| level | 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10-11 | 12 | 13-15 | 16 | 17 |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| cell | conv-LSTM k5 (R) | conv k5 | conv /2 | conv-LSTM (R) | conv | conv /2 | conv-LSTM (R) | conv | conv /2 | conv-LSTM (R) | conv | conv-LSTM (R) | conv | conv 1x1 | FC-LSTM (R) |
| shape | c1 x 88 | c1 x 88 | c2 x 44 | c2 x 44 | c2 x 44 | c3 x 22 | c3 x 22 | c3 x 22 | c4 x 11 | c4 x 11 | c4 x 11 | c4 x 11 | c4 x 11 | c4 x 11 | ``top`` |

A Ladder decoder cell at every level; the bottom readout is a 1x1 conv of d_0(t) to 88 logits.
``music_rladder_no_feedback`` drops the decoder-to-encoder links. ``music_rladder_no_decoder`` (the
hierarchical RNN) has no decoder, so its notes are read from the top level (a linear map of the
FC-LSTM's output to 88 logits); ``music_lstm`` is the paper's marginal LSTM row: one LSTM of
``top`` units over the 88 keys with the same linear readout (it ignores ``channels``).
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import nn

from rladder.core import FeedbackSpec, LadderSpec, Model, RLadder, build_ladder
from rladder.registry import Component, hookimpl, odd, option, positive, structure

NOTES_HEAD = {"name": "notes", "source": "decoder.0", "kind": "readout", "out": "input"}


@attrs.frozen
class MusicOptions:
    channels: tuple[int, int, int, int] = option((16, 32, 48, 64), help="Channels c1..c4 at 88, 44, 22 and 11 pitches.",
                                                 validator=positive)
    top: int = option(256, help="Units of the top FC-LSTM (music_lstm: of its LSTM).", validator=positive)
    kernel_size: int = option(3, help="Kernel along pitch of the conv and conv-LSTM levels above the bottom two.",
                              validator=odd)
    bottom_kernel: int = option(5, help="Kernel along pitch of the bottom two levels (88 pitches).", validator=odd)
    norm: str = option("group", help="Normalisation of every conv level: group, layer, batch or none.")
    decoder_cell: str = option("vanilla", help="Decoder cell of every level.")
    decoder_options: dict[str, Any] = option(factory=dict, help="Options of every level's decoder cell.")
    links: FeedbackSpec = option(factory=lambda: FeedbackSpec(gate="channel"),
                                 help="How d_l(t-1) enters encoder l (RLadder only). Default: a learned gate per "
                                      "channel from 0, as for the OMM RLadder (docs/table3.md, 'Gated links').")
    note_bias: float = option(-3.0, help="Initial bias of the 88 note logits: about the logit of the mean key "
                                         "frequency (4 voices of 88 keys: sigmoid(-3) = 0.047), so training starts "
                                         "near the trivial baseline instead of at 88 ln 2 nats.")


def encoder(o: MusicOptions) -> list[dict]:
    c1, c2, c3, c4 = o.channels

    def conv(c, k=o.kernel_size, **kw):
        return {"name": "conv", "channels": c, "kernel_size": k, "norm": o.norm, **kw}

    def rec(c, k=o.kernel_size):
        return {"name": "conv_lstm", "channels": c, "kernel_size": k, "norm": o.norm}

    return [rec(c1, o.bottom_kernel), conv(c1, o.bottom_kernel), conv(c2, stride=2), rec(c2), conv(c2),
            conv(c3, stride=2), rec(c3), conv(c3), conv(c4, stride=2), rec(c4), conv(c4), conv(c4), rec(c4), conv(c4),
            conv(c4), conv(c4), conv(c4, 1), {"name": "lstm", "units": o.top, "reduce": "flatten"}]


def ladder(o: MusicOptions, *, decoder: bool = True, feedback: bool = True, levels: list[dict] | None = None) -> LadderSpec:
    dec = {"name": o.decoder_cell, **o.decoder_options}
    levels = [{"encoder": e, "decoder": dict(dec) if decoder else None} for e in (levels or encoder(o))]
    return structure(LadderSpec, {"levels": levels, "heads": [NOTES_HEAD] if decoder else [], "decoder": decoder,
                                  "feedback": feedback, "links": o.links})


class TopReadout(Model):
    """A ladder without decoder whose next-step logits ``heads.notes`` are a linear map of its top
    level's output e_{L-1}(t), shaped like the input step."""

    def __init__(self, inner: RLadder):
        super().__init__()
        self.inner = inner
        self.input_shape = tuple(inner.input_shape)
        (units,) = inner.shapes[-1]
        self.top = f"encoder.{len(inner.shapes) - 1}"
        self.notes = nn.Linear(units, int(torch.Size(self.input_shape).numel()))

    def output_names(self):
        return self.inner.output_names() + ["heads.notes"]

    def canonical(self, name):
        return self.inner.canonical(name)

    def init_state(self, batch, like):
        return self.inner.init_state(batch, like)

    def step(self, x_t, state=None, keep=None):
        keep = self.resolve_keep(keep)
        inner_keep = None if keep is None else (keep - {"heads.notes"}) | {self.top}
        out, state = self.inner.step(x_t, state, inner_keep)
        if keep is None or "heads.notes" in keep:
            out["heads.notes"] = self.notes(out[self.top]).view(len(x_t), *self.input_shape)
        if keep is not None:
            out = {k: v for k, v in out.items() if k in keep}
        return out, state

    def parts(self):
        return {**self.inner.parts(), "heads.notes": self.notes}

    def summary(self):
        return self.inner.summary() + [f"  head notes: linear of {self.top} -> {self.input_shape}"]


def check_data(name: str, spec) -> None:
    if spec.static or tuple(spec.step_shape) != (1, 88):
        raise ValueError(f"model {name!r} predicts piano-roll steps (1, 88), one per time step; this data has "
                         f"steps {tuple(spec.step_shape)}{' (static)' if spec.static else ''}")


VARIANTS = {
    "music_rladder": "The 18-layer polyphonic-music RLadder (spec 4.2): 1-D conv-LSTMs over 88 pitches, Ladder decoder.",
    "music_rladder_no_feedback": "The music RLadder without decoder-to-encoder links.",
    "music_rladder_no_decoder": "The music RLadder without decoder (hierarchical RNN), notes read from the top.",
    "music_lstm": "Marginal LSTM baseline (the paper's LSTM row): one LSTM, linear readout to 88 notes.",
}


def factory(name: str):
    def build(o: MusicOptions, spec):
        check_data(name, spec)
        if name in ("music_rladder", "music_rladder_no_feedback"):
            model = build_ladder(ladder(o, feedback=name == "music_rladder"), spec)
            readout = model.heads["notes"].layer
        else:
            levels = [{"name": "lstm", "units": o.top, "reduce": "flatten"}] if name == "music_lstm" else None
            model = TopReadout(build_ladder(ladder(o, decoder=False, levels=levels), spec))
            readout = model.notes
        with torch.no_grad():
            readout.bias.fill_(o.note_bias)
        return model
    build.__doc__ = VARIANTS[name]
    return build


# a small run for the conformance kit: a few short chorales, narrow levels
EXAMPLE = {"data": {"name": "bach_chorales", "max_pieces": 4, "max_steps": 6}, "model": {"channels": [2, 2, 2, 2], "top": 4}}


@hookimpl
def rladder_components():
    return [Component("model", name, factory(name), MusicOptions, text, example=EXAMPLE)
            for name, text in VARIANTS.items()]

"""The models of Table 1 (paper section 3.1, Fig. 3), built from one encoder (spec 4.1.3).

All share the all-convolutional encoder of spec section 4.1.3, for a 1x32x32 input:

| level | static classifier     | RLadder / hierarchical RNN | temporal baseline |
|-------|-----------------------|----------------------------|-------------------|
| 0     | conv 3x3, c1          | conv-LSTM 3x3, c1 (R)      | conv 3x3, c1      |
| 1     | conv 3x3 stride 2, c1 | same                       | same              |
| 2     | conv 3x3, c2          | conv-LSTM 3x3, c2 (R)      | conv 3x3, c2      |
| 3     | conv 3x3 stride 2, c2 | same                       | same              |
| 4     | conv 3x3, c3          | conv-LSTM 3x3, c3 (R)      | conv 3x3, c3      |
| 5     | conv 1x1, c3          | same                       | same              |
| 6     | FC top (avg pool)     | FC-LSTM top (R)            | FC-LSTM top (R)   |

plus a classifier head on the top encoder output. The top level pools the last conv map with a
global max by default (``top_reduce``), not the spec's global average: after per-sample
normalisation (GroupNorm) the spatial average of every channel is nearly the same for every
input, and the static classifier stayed at chance for 400 steps with it, while with the max it
reached 14 % error in 300 steps (docs/results.md). The RLadder mirrors the encoder with a
decoder cell at every level and reads the next frame from the bottom decoder output through a
1x1 conv (logits). ``omm_hierarchical_rnn`` is the RLadder without decoder, ``omm_rladder_no_feedback``
the RLadder without decoder-to-encoder links, ``omm_temporal_baseline`` the feed-forward encoder
with an LSTM only at the top, ``omm_static`` the feed-forward encoder for the optimal
reconstruction (data option ``input = "recon"``).
"""

from __future__ import annotations

from typing import Any

import attrs

from rladder.core import FeedbackSpec, LadderSpec
from rladder.registry import Component, hookimpl, option, positive, structure


@attrs.frozen
class OMMOptions:
    channels: tuple[int, int, int] = option((32, 64, 128), help="Channels c1, c2, c3 of the three resolutions.",
                                            validator=positive)
    top: int = option(128, help="Units of the top (FC / FC-LSTM) level.", validator=positive)
    recurrent: str = option("conv_lstm", help="Encoder cell of the recurrent conv levels (R).")
    top_cell: str = option("lstm", help="Encoder cell of the recurrent top level.")
    decoder_cell: str = option("vanilla", help="Decoder cell of every level.")
    decoder_options: dict[str, Any] = option(factory=dict, help="Options of every level's decoder cell, e.g. "
                                                                "{top_input = \"zero\"} (see `rladder describe decoder_cell`).")
    links: FeedbackSpec = option(factory=lambda: FeedbackSpec(gate="channel"),
                                 help="How d_l(t-1) enters encoder l (RLadder only). Default: a learned gate per "
                                      "channel starting at 0, so the RLadder starts as its no-feedback ablation "
                                      "(docs/results.md, 'Why the RLadder lost to its ablation').")
    norm: str = option("group", help="Normalisation of every conv level: group, layer, batch or none.")
    top_reduce: str = option("max", help="How the top level pools the last conv map: max, avg or flatten.")
    recon_head: bool = option(False, help="Add head 'recon' (the bottom decoder read out as the current input), "
                                          "for the denoise task.")
    input_level: bool = option(False, help="Put a pass-through input level below the encoder (the paper's bottom "
                                           "cell e_0(t) = x_t), so the first conv-LSTM receives d_1(t-1), not the "
                                           "bottom decoder output the frame is read from (RLadder models).")


def encoder(o: OMMOptions, recurrent: bool, top_recurrent: bool) -> list[dict]:
    c1, c2, c3 = o.channels

    def conv(c, **kw):
        return {"name": "conv", "channels": c, "norm": o.norm, **kw}

    def rec(c):
        return {"name": o.recurrent, "channels": c, "norm": o.norm} if recurrent else conv(c)

    top = {"name": o.top_cell if top_recurrent else "linear", "units": o.top, "reduce": o.top_reduce}
    levels = [rec(c1), conv(c1, stride=2), rec(c2), conv(c2, stride=2), rec(c3), conv(c3, kernel_size=1), top]
    return ([{"name": "input"}] if o.input_level and recurrent else []) + levels


CLASS_HEAD = {"name": "class", "source": "encoder.-1", "kind": "classifier", "out": "classes"}
FRAME_HEAD = {"name": "frame", "source": "decoder.0", "kind": "readout", "out": "input"}


def ladder(o: OMMOptions, *, decoder: bool, feedback: bool = True, recurrent: bool = True,
           top_recurrent: bool = True) -> LadderSpec:
    dec = {"name": o.decoder_cell, **o.decoder_options}
    levels = [{"encoder": e, "decoder": dict(dec) if decoder else None} for e in encoder(o, recurrent, top_recurrent)]
    heads = [FRAME_HEAD, CLASS_HEAD] if decoder else [CLASS_HEAD]
    if decoder and o.recon_head:
        heads.append({**FRAME_HEAD, "name": "recon"})
    return structure(LadderSpec, {"levels": levels, "heads": heads, "decoder": decoder, "feedback": feedback,
                                  "links": o.links})


# name -> (ladder switches, description); every model checks it gets the data it was made for
VARIANTS = {
    "omm_rladder": (dict(decoder=True), "Occluded Moving MNIST RLadder (spec 4.1.3): conv-LSTM encoder, Ladder decoder."),
    "omm_rladder_no_feedback": (dict(decoder=True, feedback=False), "The RLadder without decoder-to-encoder links."),
    "omm_hierarchical_rnn": (dict(decoder=False), "The RLadder without decoder (Table 1's hierarchical RNN)."),
    "omm_temporal_baseline": (dict(decoder=False, recurrent=False), "Feed-forward conv encoder, FC-LSTM only at the top."),
    "omm_static": (dict(decoder=False, recurrent=False, top_recurrent=False),
                   "Static feed-forward classifier for the optimal reconstruction (data.input = 'recon')."),
}


def factory(name: str):
    switches, _ = VARIANTS[name]

    def build(o: OMMOptions, spec) -> LadderSpec:
        static = name == "omm_static"
        if spec.static != static:
            want = "a static image: use data.input = \"recon\"" if static else "the occluded video (data.input = \"frames\")"
            raise ValueError(f"model {name!r} needs {want}")
        return ladder(o, **switches)
    build.__doc__ = VARIANTS[name][1]
    return build


@hookimpl
def rladder_components():
    return [Component("model", name, factory(name), OMMOptions, text) for name, (_, text) in VARIANTS.items()]

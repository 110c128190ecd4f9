"""The generic model: a ladder written level by level in the config.

```toml
[model]
name = "ladder"
levels = [
  { encoder = { name = "conv_lstm", channels = 32 }, decoder = { name = "vanilla" } },
  { encoder = { name = "lstm", units = 64 },          decoder = { name = "vanilla" } },
]
heads = [ { name = "frame", source = "decoder.0", kind = "readout", out = "input" } ]
```
"""

from __future__ import annotations

from rladder.core import LadderSpec
from rladder.registry import Component, hookimpl


def build(options: LadderSpec, spec) -> LadderSpec:
    return options


# A small ladder for the conformance kit (`levels` has no default): conv-LSTM, then an LSTM on top.
EXAMPLE = {"model": {
    "levels": [{"encoder": {"name": "conv_lstm", "channels": 4}, "decoder": {"name": "vanilla"}},
               {"encoder": {"name": "lstm", "units": 8}, "decoder": {"name": "vanilla"}}],
    "heads": [{"name": "frame", "source": "decoder.0", "kind": "readout", "out": "input"},
              {"name": "class", "source": "encoder.-1", "kind": "classifier", "out": "classes"}]}}


@hookimpl
def rladder_components():
    return [Component("model", "ladder", build, LadderSpec,
                      "A ladder assembled level by level from encoder_cell and decoder_cell names.",
                      example=EXAMPLE)]

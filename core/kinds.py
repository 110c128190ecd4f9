"""The kinds of component rladder uses, declared to the registry (which knows none of its own).

Imported by ``rladder.core`` itself, so every use of core (the launcher, the built-in plugins, a
third-party plugin that subclasses ``EncoderCell``) sees them declared. A plugin that adds a new
kind declares it the same way, with ``rladder.registry.declare_kind``, before it provides one.
"""

from __future__ import annotations

from rladder.registry import declare_kind

KINDS = {
    "encoder_cell": "bottom-up unit of a level: (e_l(t), s_l(t)) = f(e_{l-1}(t), d_l(t-1), s_l(t-1))",
    "decoder_cell": "stateless top-down unit of a level: d_l(t) = g(e_l(t), d_{l+1}(t))",
    "task": "a cost on named model outputs, with its metrics",
    "dataset": "a DataSpec and, per split, its samples",
    "model": "a ready-made model built from the DataSpec",
    "loader": "batches of one split of a dataset",
    "recipe": "the rows of a paper table, for `rladder reproduce`",
}

for _name, _description in KINDS.items():
    declare_kind(_name, _description)

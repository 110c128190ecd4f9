"""The pluggy hook a plugin implements. Project name and entry-point group: `rladder`."""

from __future__ import annotations

import pluggy

PROJECT = "rladder"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def rladder_components():
    """Return an iterable of `rladder.registry.Component` that this plugin provides.

    Example (a plugin module named by an entry point in group `rladder`)::

        from rladder.registry import Component, hookimpl

        @hookimpl
        def rladder_components():
            return [Component("encoder_cell", "my_cell", build_my_cell, MyCellOptions,
                              "One-line description.")]
    """

"""The installed rladder version (saved with runs, checkpoints and shards)."""

from __future__ import annotations


def rladder_version() -> str:
    from importlib.metadata import version
    return version("rladder")

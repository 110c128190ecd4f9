"""Errors shared by every layer of rladder.

Each error is one clear paragraph: what was wrong, where, and what to do. The launcher maps
`ConfigError` (and its subclasses) to exit code 2 and every other `RladderError` to exit code 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RladderError(Exception):
    """Base class of every error rladder raises on purpose (exit code 1 in the launcher)."""

    exit_code = 1


class ConfigError(RladderError):
    """Bad configuration or usage: a name, an option, a shape contract (exit code 2)."""

    exit_code = 2


class UnknownComponentError(ConfigError):
    """A `kind/name` that no loaded plugin provides."""


class DuplicateComponentError(ConfigError):
    """Two plugins provide the same `kind/name`."""


class OptionError(ConfigError):
    """An unknown, missing or ill-typed option of a component or config section."""


class ContractError(ConfigError):
    """Parts of a run that do not fit together (channels, shapes, task inputs)."""


class DataError(RladderError):
    """A data file or shard is missing, corrupt or truncated."""


def near_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Closest candidates to `word` (difflib), best first; substring hits come first."""
    candidates = list(candidates)
    subs = [c for c in candidates if word and (word in c or c in word)]
    close = difflib.get_close_matches(word, candidates, n=n, cutoff=0.5)
    out: list[str] = []
    for c in close + subs:
        if c not in out:
            out.append(c)
    return out[:n]

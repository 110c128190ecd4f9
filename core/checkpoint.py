"""Checkpoints: written atomically (temporary file, fsync, rename), read with weights_only=True.

A checkpoint is a dict of tensors and plain values only, so ``torch.load(weights_only=True)``
reads it without unpickling arbitrary objects: model, tasks (EMA teachers included), optimizer,
scheduler and grad-scaler state, step, RNG states, loader position, best validation value, the
resolved config and the plugin versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rladder.registry import DataError

from .files import atomic_file

FORMAT = 1


def save(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically; a crash leaves the previous file intact."""
    with atomic_file(path) as fh:
        torch.save({"format": FORMAT, **payload}, fh)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint on CPU; a missing, truncated or foreign file raises DataError naming it."""
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise DataError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); it is truncated, "
                        f"corrupt or not an rladder checkpoint") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not an rladder checkpoint of format {FORMAT}")
    return data

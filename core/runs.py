"""Reading a run folder back: its resolved config, its model and tasks with trained weights."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import torch

from rladder.registry import ConfigError, DataError, Registry, get_registry

from . import checkpoint
from .assemble import Run, build_run
from .config import RunConfig, from_dict


def run_config(run_dir: Path, registry: Registry | None = None) -> RunConfig:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not an rladder run folder (no config.toml); give the folder that "
                          f"`rladder train` wrote")
    try:
        return from_dict(tomllib.loads(path.read_text()), registry)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path} is not valid TOML: {exc}") from None


def checkpoint_path(run_dir: Path, which: Literal["best", "last"] = "best") -> Path:
    folder = Path(run_dir) / "checkpoints"
    path = folder / f"{which}.pt"
    if which == "best" and not path.is_file():
        path = folder / "last.pt"
    if not path.is_file():
        raise DataError(f"{run_dir} has no checkpoint yet ({folder}/{which}.pt is missing)")
    return path


def load_trained(run_dir: Path, which: Literal["best", "last"] = "best", registry: Registry | None = None,
                 device: torch.device | str = "cpu") -> tuple[RunConfig, Run, int]:
    """The run's config, its objects with the checkpoint's weights (eval mode), and the checkpoint's step."""
    reg = registry or get_registry()
    config = run_config(run_dir, reg)
    run = build_run(config, reg)
    state = checkpoint.load(checkpoint_path(run_dir, which))
    run.model.load_state_dict(state["model"])
    tasks = torch.nn.ModuleDict(run.tasks)
    tasks.load_state_dict(state["tasks"])
    run.model.to(device).eval()
    tasks.to(device)
    return config, run, int(state["step"])

"""Reading a run folder back: its resolved config, its model and tasks with trained weights; telling
a run that stopped before its first checkpoint (nothing to resume) from one that can be resumed."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Literal

import torch

from rladder.registry import ConfigError, DataError, Registry, get_registry

from . import checkpoint
from .assemble import Run, build_run
from .config import RunConfig, from_dict, toml_text


def run_config(run_dir: Path, registry: Registry | None = None) -> RunConfig:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not an rladder run folder (no config.toml); give the folder that "
                          f"`rladder train` wrote")
    try:
        return from_dict(tomllib.loads(toml_text(path, f"the run's config {path}")), registry)
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


# Files a run writes besides its checkpoints (pictures are the folder's *.png): what `train --restart` clears.
RUN_FILES = ("config.toml", "meta.json", "metrics.jsonl", "labels.json")


def holds_run(run_dir: Path) -> bool:
    """Whether `rladder train` (or a Trainer) has already written into ``run_dir``."""
    return (Path(run_dir) / "config.toml").exists() or (Path(run_dir) / "checkpoints").exists()


def checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints that exist (``last.pt``, ``best.pt``)."""
    folder = Path(run_dir) / "checkpoints"
    return [p for p in (folder / "last.pt", folder / "best.pt") if p.is_file()]


def last_logged_step(run_dir: Path) -> int | None:
    """The last step in metrics.jsonl (None without one; a half-written last line is ignored)."""
    path = Path(run_dir) / "metrics.jsonl"
    step = None
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                step = int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue
    return step


def restart_command(run_dir: Path, train_args: list[str] | None = None) -> str:
    """`rladder train ... --run-dir RUN_DIR --restart` with ``train_args`` (what follows `train`), by default
    those of the train command recorded in meta.json, else a CONFIG placeholder."""
    if train_args is None:
        try:
            argv = [str(a) for a in json.loads((Path(run_dir) / "meta.json").read_text())["command"]]
        except (OSError, ValueError, KeyError, TypeError):
            argv = []
        train_args = argv[argv.index("train") + 1:] if "train" in argv else ["CONFIG"]
    kept, skip = [], False
    for arg in train_args:
        if not skip and arg not in ("--restart", "--run-dir") and not arg.startswith("--run-dir="):
            kept.append(arg)
        skip = arg == "--run-dir"
    return shlex.join(["rladder", "train", *kept, "--run-dir", str(run_dir), "--restart"])


def not_resumable_error(run_dir: Path, train_args: list[str] | None = None) -> ConfigError:
    """The error for a run folder without ``checkpoints/last.pt`` (see `restart_command` for ``train_args``)."""
    if checkpoints(run_dir):
        return ConfigError(f"{run_dir} cannot be resumed: checkpoints/last.pt was never written, only best.pt, "
                           f"which holds weights but not the optimizer state and data position; evaluate it with "
                           f"`rladder eval {run_dir}`, or train again with another --run-dir")
    step = last_logged_step(run_dir)
    logged = f"metrics.jsonl reaches step {step}" if step is not None else "it logged no step"
    return ConfigError(f"{run_dir} holds a run that stopped before its first checkpoint ({logged}; "
                       f"checkpoints/last.pt was never written), so there is nothing to resume; start it over with "
                       f"`{restart_command(run_dir, train_args)}`, or choose another --run-dir")


def clear_run(run_dir: Path) -> list[str]:
    """Remove the files of a run that has no checkpoint (`train --restart`); returns the names removed."""
    run_dir = Path(run_dir)
    if checkpoints(run_dir):
        raise ConfigError(f"{run_dir} holds checkpoints ({', '.join(p.name for p in checkpoints(run_dir))}); "
                          f"--restart only starts over a run that stopped before its first checkpoint, so it never "
                          f"deletes trained weights. Continue the run with `rladder resume {run_dir}`, choose another "
                          f"--run-dir, or delete the folder yourself")
    doomed = [run_dir / name for name in RUN_FILES] + sorted(run_dir.glob("*.png")) + \
        sorted(run_dir.glob("eval-*.json")) + sorted((run_dir / "checkpoints").glob(".*.part"))
    removed = []
    for path in doomed:
        if path.is_file():
            path.unlink()
            removed.append(str(path.relative_to(run_dir)))
    if (run_dir / "checkpoints").is_dir() and not any((run_dir / "checkpoints").iterdir()):
        (run_dir / "checkpoints").rmdir()
    return removed

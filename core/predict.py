"""`rladder predict`: a trained model on new inputs from a .npy/.npz file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from rladder.registry import ConfigError, DataError

from .files import atomic_file
from .objective import model_outputs
from .runs import load_trained


def read_inputs(path: Path, spec) -> np.ndarray:
    """Inputs as float32 (N, T, *step) (or (N, *step) for static data), checked against the DataSpec."""
    if not path.is_file():
        raise ConfigError(f"input file {path} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path} is not a readable .npy/.npz file ({exc})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        if "x" not in data.files:
            raise ConfigError(f"{path} has no array 'x' (it has {', '.join(data.files)})")
        x = data["x"]
    else:
        x = data
    step = tuple(spec.step_shape)
    lead = 1 if spec.static else 2
    if x.shape[-len(step):] != step or x.ndim not in (lead + len(step) - 1, lead + len(step)):
        want = "(N, " + ("" if spec.static else "T, ") + ", ".join(map(str, step)) + ")"
        raise ConfigError(f"{path}: input shape {x.shape} does not fit this model; expected {want} "
                          f"or one sample without N")
    if x.ndim == lead + len(step) - 1:
        x = x[None]
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{path}: the inputs contain NaN or inf values")
    if x.min() < 0 or x.max() > 1:
        print(f"warning: {path}: inputs range over [{x.min():.3g}, {x.max():.3g}]; the model was trained on [0, 1]",
              file=sys.stderr)
    return x


def _predictions(run, outputs) -> dict:
    for task in run.tasks.values():
        outputs.update(task.predictions(outputs))
    return outputs


@torch.no_grad()
def rollout(run, xb: torch.Tensor, steps: int) -> torch.Tensor:
    """Closed loop: after the inputs, feed the predicted next input back for ``steps`` steps (B, steps, *step).

    The next input comes from the first task whose ``next_input`` gives one (``next_step``: the
    predicted next frame)."""
    heads = set(run.model.head_outputs())
    outputs, state = run.model(xb, keep=heads)
    nxt = _next_input(run, _predictions(run, outputs), xb)[:, -1]
    frames = []
    for _ in range(steps):
        frames.append(nxt)
        out, state = run.model.step(nxt, state, keep=heads)
        out = _predictions(run, {k: v.unsqueeze(1) for k, v in out.items()})
        nxt = _next_input(run, out, xb)[:, -1]
    return torch.stack(frames, 1)


def _next_input(run, predictions, xb) -> torch.Tensor:
    """What the tasks make of the predictions as the next input, with the input's layout."""
    for task in run.tasks.values():
        nxt = task.next_input(predictions)
        if nxt is not None and nxt.shape[2:] == xb.shape[2:]:
            return nxt
    raise ConfigError("--rollout needs a task that predicts the next input (for example next_step); "
                      f"this run's tasks ({', '.join(run.tasks) or 'none'}) predict none")


@torch.no_grad()
def predict_file(run_dir, input_path, output_path=None, which: str = "best", batch: int = 64,
                 rollout_steps: int = 0) -> Path:
    config, run, step = load_trained(Path(run_dir), which)
    x = read_inputs(Path(input_path), run.spec)
    if rollout_steps and run.spec.static:
        raise ConfigError("--rollout continues a sequence; this run's data are static inputs")
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), batch):
        xb = torch.from_numpy(x[start:start + batch])
        outputs = _predictions(run, model_outputs(run.model, {"x": xb}, run.spec, keep=run.model.head_outputs()))
        if rollout_steps:
            outputs["rollout"] = rollout(run, xb, rollout_steps)
        for key, value in outputs.items():
            collected.setdefault(key, []).append(value.float().numpy())
    out = Path(output_path) if output_path else Path(input_path).with_suffix(".predictions.npz")
    arrays = {k: np.concatenate(v) for k, v in collected.items()}
    with atomic_file(out) as fh:
        np.savez(fh, **arrays, checkpoint_step=np.int64(step))
    return out

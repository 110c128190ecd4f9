"""`rladder generate`: continue a sequence by sampling a trained model step by step, the state carried.

The dataset reads the primer into model inputs (``Dataset.read_primer``: the music datasets read
a MIDI file or one of their pieces; a dataset that reads none gets a ``.npy``/``.npz`` file of
inputs, as `rladder predict` reads them). The model runs over the primer; then, for every new
step, the first task that can sample (``Task.sample_input``: ``next_step`` draws every value from
its predicted Bernoulli probability) makes the next input from the last step's predictions, and
the model takes it with its state carried. The dataset writes the result in its own form
(``Dataset.write_generated``: a MIDI file and a piano-roll picture for music; else ``.npy``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rladder.registry import ConfigError

from .predict import read_inputs
from .runs import load_trained


@torch.no_grad()
def generate(run_dir, primer: str, steps: int, out, which: str = "best", seed: int = 0,
             primer_steps: int = 0) -> list[Path]:
    """Write ``steps`` sampled steps after the primer (its first ``primer_steps`` steps; 0: all); returns
    the files the dataset wrote."""
    config, run, _ = load_trained(Path(run_dir), which)
    if run.spec.static:
        raise ConfigError("generate continues a sequence; this run's data are static inputs")
    x = run.dataset.read_primer(primer, primer_steps)
    if x is None:
        x = torch.from_numpy(read_inputs(Path(primer), run.spec)[0])
        x = x[:primer_steps] if primer_steps else x
    if not len(x):
        raise ConfigError(f"the primer {primer!r} has no steps")
    heads = run.model.head_outputs()
    gen = torch.Generator().manual_seed(seed)
    outputs, state = run.model(x[None].float(), keep=heads)
    last = {k: v[:, -1:] for k, v in outputs.items()}
    sampled = []
    for _ in range(steps):
        nxt = _sample(run, last, gen)[:, -1]                     # (1, *step)
        sampled.append(nxt)
        out_t, state = run.model.step(nxt, state, keep=heads)
        last = {k: v.unsqueeze(1) for k, v in out_t.items()}
    sequence = torch.cat([x.float(), *sampled]) if sampled else x.float()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return run.dataset.write_generated(sequence, len(x), Path(out))


def _sample(run, outputs, generator) -> torch.Tensor:
    """The next input (1, 1, *step) drawn by the first task that samples one from these outputs."""
    predictions = dict(outputs)
    for task in run.tasks.values():
        predictions.update(task.predictions(outputs))
    for task in run.tasks.values():
        nxt = task.sample_input(predictions, generator)
        if nxt is not None and tuple(nxt.shape[2:]) == tuple(run.spec.step_shape):
            return nxt
    raise ConfigError("generate needs a task that predicts the next input (for example next_step); this run's "
                      f"tasks ({', '.join(run.tasks) or 'none'}) predict none")

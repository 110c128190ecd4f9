"""`rladder check`: build a run from its config and push one dummy batch through it."""

from __future__ import annotations

import time

import torch

from rladder.registry import get_registry

from .assemble import build_run, count_parameters
from .config import RunConfig
from .objective import model_outputs, prepare, total_loss


def check_run(config: RunConfig, batch: int = 2) -> str:
    """Build everything, run forward and backward once, and describe what was built."""
    reg = get_registry()
    t0 = time.perf_counter()
    run = build_run(config, reg)
    model, spec = run.model, run.spec
    lines = [f"data: {config.data['name']} ({spec.modality}, step {spec.step_shape}, "
             f"{'static, ' if spec.static else ''}{spec.seq_len} steps, {spec.num_classes} classes)",
             f"model: {config.model['name']} ({reg.get('model', config.model['name']).provider}), "
             f"{count_parameters(model):,} parameters"]
    lines += model.summary()
    gen = torch.Generator().manual_seed(config.seed)
    data = prepare(run.tasks, model, run.dataset.dummy_batch(batch, gen))   # x_uncorrupted and task targets, as in training
    outputs = model_outputs(model, data, spec)
    if run.tasks:
        loss, parts = total_loss(run.tasks, outputs, data)
        for label, task in run.tasks.items():
            lines.append(f"task {label}: {type(task).__name__}, weight {task.weight:g}, "
                         f"cost on the dummy batch {parts[label].item():.4g}")
    else:
        loss = sum((v.float() ** 2).mean() for v in outputs.values())
        lines.append("no tasks: the mean square of every output stood in for the loss")
    if not torch.isfinite(loss):
        raise RuntimeError(f"the loss on a dummy batch is {loss.item()}: the model or a task produces NaN/inf")
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    lines.append(f"forward + backward on a dummy batch of {batch}: loss {loss.item():.4g}, "
                 f"{time.perf_counter() - t0:.2f} s")
    if missing:
        lines.append(f"warning: {len(missing)} parameter tensors get no gradient from the tasks "
                     f"(e.g. {', '.join(missing[:3])}); they will not train")
    lines.append("check passed")
    return "\n".join(lines)

"""Mean Teacher consistency at the top (Tarvainen & Valpola 2017; paper section 3.1, spec section 8).

The teacher is an exponential moving average of the student's weights, updated after every
optimizer step with ``a = min(1 - 1/(step + 1), decay)``, where decay is ``rampup_decay`` during
the ramp-up and ``decay`` after it. Student and teacher see the same batch with independent
noise (student: ``train.input_noise``; teacher: ``teacher_noise``). The cost is the mean squared
difference of their softmax outputs at the last step (or every step), on every sample, labelled
or not, times a sigmoid ramp-up ``exp(-5 (1 - min(1, step / rampup_steps))^2)``; the task's
weight is the maximum consistency weight. The teacher is part of the task's state, so it is
saved in checkpoints and restored by resume; evaluation reports it as ``<task>/teacher/...``.
Under data-parallel training every process holds the same student after each step, so the EMA
stays identical across processes.
"""

from __future__ import annotations

import copy
import math

import attrs
import torch

from rladder.core import Needs, Task, TaskOptions, model_outputs
from rladder.registry import Component, hookimpl, in_open_unit, non_negative, option


@attrs.frozen
class MeanTeacherOptions(TaskOptions):
    head: str = option("class", help="Head with the class logits (B, T, K).")
    decay: float = option(0.999, help="EMA decay after the ramp-up.", validator=in_open_unit)
    rampup_decay: float = option(0.99, help="EMA decay during the ramp-up.", validator=in_open_unit)
    rampup_steps: int = option(1000, help="Steps of the sigmoid ramp-up of the consistency weight.",
                               validator=non_negative)
    teacher_noise: float = option(0.1, help="Std of the teacher's own Gaussian input noise.", validator=non_negative)
    every_step: bool = option(False, help="Consistency at every step instead of the last one.")


class MeanTeacher(Task):
    def __init__(self, options: MeanTeacherOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o, self.spec = options, spec
        self.teacher: torch.nn.Module | None = None
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def bind(self, model):
        self.teacher = copy.deepcopy(model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def needs(self) -> Needs:
        return Needs((f"heads.{self.o.head}",), ("x_uncorrupted",))

    def ramp(self) -> float:
        if self.o.rampup_steps == 0:
            return 1.0
        phase = 1.0 - min(1.0, int(self.step) / self.o.rampup_steps)
        return math.exp(-5.0 * phase * phase)

    def prepare(self, model, batch):
        x = batch["x_uncorrupted"]
        if self.o.teacher_noise:
            x = x + self.o.teacher_noise * torch.randn_like(x)
        with torch.no_grad():
            out = model_outputs(self.teacher, {"x": x}, self.spec, keep={f"heads.{self.o.head}"})
        return {f"{self.label}/teacher_probs": torch.softmax(out[f"heads.{self.o.head}"].float(), -1)}

    def loss(self, outputs, batch):
        student = torch.softmax(outputs[f"heads.{self.o.head}"].float(), -1)
        teacher = batch[f"{self.label}/teacher_probs"]
        if not self.o.every_step:
            student, teacher = student[:, -1], teacher[:, -1]
        return self.ramp() * ((student - teacher) ** 2).mean()

    @torch.no_grad()
    def after_optimizer_step(self, model, step):
        self.step.fill_(step)
        decay = self.o.rampup_decay if step < self.o.rampup_steps else self.o.decay
        alpha = min(1.0 - 1.0 / (step + 1), decay)
        for t, s in zip(self.teacher.parameters(), model.parameters()):
            t.mul_(alpha).add_(s.detach(), alpha=1.0 - alpha)
        for t, s in zip(self.teacher.buffers(), model.buffers()):
            t.copy_(s)

    def extra_models(self):
        return {"teacher": self.teacher}


@hookimpl
def rladder_components():
    return [Component("task", "mean_teacher", MeanTeacher, MeanTeacherOptions,
                      "Mean Teacher: EMA teacher, softmax consistency with sigmoid ramp-up.")]

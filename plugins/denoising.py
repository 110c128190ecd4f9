"""Ladder-style denoising costs (Rasmus et al. 2015; spec section 7.3).

The input is corrupted with Gaussian noise (``train.input_noise``); the bottom readout head
``head`` (logits, through a sigmoid, or raw with ``link = "identity"``) must reconstruct the
clean input, ``x_uncorrupted``. Optional per-level costs compare the decoder output d_l of the
corrupted pass with the encoder output e_l of a clean pass (no gradient through the clean pass),
both normalised with the clean pass's batch statistics (per channel or unit, over batch, steps
and space), weighted by ``level_weights[l]`` (the Ladder's lambda_l; missing entries are 0):

    C = input_weight * mean (x_hat - x)^2  +  sum_l lambda_l * mean ((d_l - mu_l) / s_l - (e_l - mu_l) / s_l)^2
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch

from rladder.core import Needs, Task, TaskOptions, model_outputs
from rladder.registry import Component, hookimpl, non_negative, option


@attrs.frozen
class DenoiseOptions(TaskOptions):
    head: str = option("recon", help="Head reconstructing the clean input from the bottom decoder ('' = none).")
    link: Literal["sigmoid", "identity"] = option("sigmoid", help="Map from the head's output to the input range.")
    input_weight: float = option(1.0, help="Weight of the input reconstruction cost (lambda_0).",
                                 validator=non_negative)
    level_weights: tuple[float, ...] = option((), help="lambda_l of the per-level costs, from level 0 up.",
                                              validator=attrs.validators.deep_iterable(non_negative))


class Denoise(Task):
    def __init__(self, options: DenoiseOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o = options
        self.spec = spec
        self.levels = [(l, w) for l, w in enumerate(options.level_weights) if w > 0]

    def needs(self) -> Needs:
        outs = ((f"heads.{self.o.head}",) if self.o.head and self.o.input_weight else ())
        outs += tuple(f"decoder.{l}" for l, _ in self.levels)
        return Needs(outs, ("x_uncorrupted",), noise=True)

    def prepare(self, model, batch):
        if not self.levels:
            return {}
        with torch.no_grad():
            clean = model_outputs(model, {"x": batch["x_uncorrupted"]}, self.spec,
                                  keep={f"encoder.{l}" for l, _ in self.levels})
        return {f"{self.label}/clean.encoder.{l}": clean[f"encoder.{l}"] for l, _ in self.levels}

    def loss(self, outputs, batch):
        total = None
        if self.o.head and self.o.input_weight:
            x_hat = outputs[f"heads.{self.o.head}"].float()
            if self.o.link == "sigmoid":
                x_hat = torch.sigmoid(x_hat)
            target = batch["x_uncorrupted"]
            if target.dim() < x_hat.dim():                        # a static input, repeated at every step
                target = target.unsqueeze(1).expand_as(x_hat)
            total = self.o.input_weight * ((x_hat - target) ** 2).mean()
        for l, weight in self.levels:
            d, e = outputs[f"decoder.{l}"].float(), batch[f"{self.label}/clean.encoder.{l}"].float()
            dims = [i for i in range(e.dim()) if i != 2]           # (B, T, C, ...): statistics per channel
            mu, sd = e.mean(dims, keepdim=True), e.std(dims, keepdim=True) + 1e-5
            term = weight * (((d - mu) / sd - (e - mu) / sd) ** 2).mean()
            total = term if total is None else total + term
        if total is None:
            raise ValueError(f"tasks.{self.label}: no cost left (input_weight = 0 and no level weight > 0)")
        return total


@hookimpl
def rladder_components():
    return [Component("task", "denoise", Denoise, DenoiseOptions,
                      "Ladder denoising: reconstruct the clean input; optional per-level costs (lambda_l).")]

"""Loaders of a run's splits, built from the run's config through the registry."""

from __future__ import annotations

import torch

from rladder.registry import Registry, get_registry

from .assemble import Run
from .config import RunConfig
from .distributed import Dist
from .interfaces import Loader
from .labels import LabelPlan


def make_loader(run: Run, config: RunConfig, split: str, train: bool, dist: Dist,
                registry: Registry | None = None, batch_size: int | None = None,
                labels: LabelPlan | None = None, device: torch.device | str = "cpu") -> Loader:
    reg = registry or get_registry()
    return reg.build("loader", config.loader, path="loader", dataset=run.dataset, split=split,
                     batch_size=batch_size or config.train.batch_size, train=train, seed=config.seed,
                     rank=dist.rank, world=dist.world, labels=labels, data_config=config.data, device=device)

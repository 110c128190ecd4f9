"""Test-wide settings: one torch thread (two threads under contention ran 20x slower), no
plugin fixture packages collected as tests, and a fresh process-wide registry per test."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

collect_ignore = ["plugins", "helpers"]


@pytest.fixture(autouse=True)
def _clean_registry(monkeypatch):
    """Each test sees the installed plugins freshly loaded, without allow/block lists."""
    from rladder.registry import ALLOW_ENV, BLOCK_ENV, reset_registry

    monkeypatch.setenv(ALLOW_ENV, "")  # empty: no list; the launcher may set them, teardown restores
    monkeypatch.setenv(BLOCK_ENV, "")
    reset_registry(None)
    yield
    reset_registry(None)


@pytest.fixture
def make_trainer():
    """Build a quiet Trainer from config files and `--set` overrides: make_trainer(files, run_dir, *sets, **kw)."""
    from rladder.core.config import load_raw, resolve
    from rladder.core.train import Trainer

    def make(files, run_dir, *sets, **kw):
        files = files if isinstance(files, list | tuple) else [files]
        return Trainer(resolve(load_raw(files, list(sets))), run_dir, progress=False, log=lambda m: None, **kw)
    return make


def interrupt_after(trainer, step: int) -> None:
    """Make ``trainer`` behave as if Ctrl-C came during step ``step`` (it saves and stops there)."""
    original = trainer._train_step

    def train_step(batch):
        out = original(batch)
        if trainer.step == step - 1:
            trainer._stop_requested = True
        return out

    trainer._train_step = train_step


@pytest.fixture
def interrupt():
    return interrupt_after

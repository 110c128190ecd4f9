"""Training: Adam with a schedule, clipping, AMP on GPU, validation, atomic checkpoints, exact resume.

A run lives in a folder::

    RUN_DIR/config.toml          the resolved config (every default filled in)
    RUN_DIR/meta.json            rladder, torch and plugin versions, the command, the device, the numerics
    RUN_DIR/metrics.jsonl        one JSON object per log line (train) and per validation (val)
    RUN_DIR/checkpoints/last.pt  everything needed to resume (written every train.checkpoint_every steps)
    RUN_DIR/checkpoints/best.pt  the weights with the best validation value
    RUN_DIR/eval-<split>.json    results of `rladder eval` (and of the test pass at the end of training)

`resume`, `eval`, `predict` and `viz` need nothing but this folder. On CPU a resumed run is
bit-identical to an uninterrupted one on the same numerics (meta.json ``numerics``: CPU ISA and
thread count; a resume on other numerics is noted in the log and in meta.json): the data order,
every RNG and the optimizer state are restored. Ctrl-C saves a checkpoint and stops; a NaN or inf
loss stops the run and keeps the last good checkpoint. With several processes (torchrun) only rank
0 writes.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rladder.registry import ConfigError, Registry, RladderError, get_registry, plugin_versions

from . import checkpoint
from .assemble import build_run
from .config import RunConfig, to_dict, to_toml
from .data import make_loader
from .devices import autocast, pick_device, pick_precision
from .distributed import Dist
from .distributed_ops import all_true, any_true, largest
from .evaluation import evaluate_all, headline_keys
from .files import write_text
from .instruments import Instruments
from .interfaces import Loader, to_device
from .labels import plan as label_plan
from .ladder import GradientGate, GradientSwitch, RLadder
from .objective import (Carry, cap_norms, corrupt, gradient_cosine, needed_outputs, prepare, project_conflict,
                        total_loss)
from .versions import describe_numerics, numerics, rladder_version


class TrainingStopped(RladderError):
    """The run stopped early (NaN/inf loss); the last good checkpoint is kept."""


class Interrupted(RladderError):
    """Ctrl-C: a checkpoint was saved; `rladder resume` continues."""

    exit_code = 130


def lr_factor(step: int, cfg, time_fraction: float = 0.0) -> float:
    """Multiplier of train.lr after ``step`` optimizer steps: warm-up, then the schedule.

    The schedule's progress is ``step / steps``, or, with ``schedule_by = "time"``, the larger of
    that and ``time_fraction`` (the share of ``max_minutes`` used), so the decay ends at the deadline.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = step / max(1, cfg.steps)
    if cfg.schedule_by == "time" and cfg.max_minutes:
        progress = max(progress, time_fraction)
    warm = cfg.warmup_steps / max(1, cfg.steps)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress - warm) / max(1e-9, 1 - warm))))
    if progress < cfg.decay_start:                         # linear_decay: Ladder style, to 0 at the end
        return 1.0
    return max(0.0, (1.0 - progress) / (1.0 - cfg.decay_start))


class Trainer:
    """Trains the run described by a resolved config, in ``run_dir`` (see module docstring)."""

    def __init__(self, config: RunConfig, run_dir: Path, *, resume: bool = False, dist: Dist = Dist(),
                 registry: Registry | None = None, progress: bool | None = None, log=None,
                 callbacks: Sequence[Callable[[Trainer], None]] = ()):
        self.config, self.run_dir, self.dist = config, Path(run_dir), dist
        self.registry = registry or get_registry()
        self.cfg = cfg = config.train
        say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.log = say if dist.main else (lambda msg: None)      # one process speaks for all
        self.progress = sys.stderr.isatty() if progress is None else progress
        if cfg.batch_size % dist.world:
            raise ConfigError(f"train.batch_size = {cfg.batch_size} must be divisible by the {dist.world} processes")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device, dist)
        self.amp = pick_precision(cfg.precision, self.device)
        self.run = build_run(config, self.registry)                 # seeds the model init with config.seed
        self.model = self.run.model.to(self.device)
        if cfg.channels_last:
            if len(self.run.spec.step_shape) != 3:
                raise ConfigError("train.channels_last applies to 2-D (video) models only")
            self.model = self.model.to(memory_format=torch.channels_last)
        self.tasks = nn.ModuleDict(self.run.tasks).to(self.device)
        self.decoder_gates = self._decoder_gates()
        self.link_gates = self._link_gates()
        self._check_protect_task()
        self.link_switches = self._link_switches()
        # the tasks whose terms are back-propagated apart first (two backward passes), or none
        self.split_first = [label for label in self.tasks if label not in cfg.link_gradient_tasks] \
            if self.link_switches else [cfg.protect_task] if cfg.protect_task else []
        params = [p for p in [*self.model.parameters(), *self.tasks.parameters()] if p.requires_grad]
        self.params = params
        self.conflict = torch.zeros(3, device=self.device)   # log-interval sums: cosine, share changed, steps
        kind = torch.optim.AdamW if cfg.weight_decay else torch.optim.Adam
        if cfg.compile_optimizer:
            if self.amp == torch.float16:
                raise ConfigError("train.compile_optimizer does not work with fp16 loss scaling; use precision = 'bf16'")
            # a tensor learning rate, so the schedule changes it without recompiling the step
            self.optimizer = kind(params, lr=torch.tensor(cfg.lr, device=self.device), betas=cfg.betas,
                                  weight_decay=cfg.weight_decay, capturable=True, foreach=True)
        else:
            self.optimizer = kind(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.clock = 0.0                     # seconds spent in fit() over all sessions (max_minutes, schedule_by)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg, self.clock / (60 * cfg.max_minutes) if cfg.max_minutes else 0))
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.keep = needed_outputs(self.tasks)
        self.instruments = self._instruments()
        self.forward_model = self._wrap(self.model)
        self._forward_loss = self._compiled(self._eager_forward_loss) if cfg.compile else self._eager_forward_loss
        self._optimizer_step = self._compiled(self.optimizer.step, graphs=False) if cfg.compile_optimizer \
            else self.optimizer.step
        needs = {label: task.needs() for label, task in self.tasks.items()}
        noisy = [label for label, n in needs.items() if n.noise]
        if noisy and cfg.input_noise == 0:
            raise ConfigError(f"tasks.{noisy[0]} needs a corrupted input: set train.input_noise > 0 (for example 0.2)")
        self.labels = label_plan(config, self.run.dataset, any(n.supervised for n in needs.values()),
                                 self.run_dir if dist.main else None, write=not resume)
        self.step = 0
        self.best: dict[str, Any] = {"metric": cfg.best_metric or "loss", "value": None, "step": None}
        self.train_loader = make_loader(self.run, config, "train", True, dist, self.registry, labels=self.labels,
                                        device=self.device)
        self._val_loader: Loader | None = None
        self._stop_requested = False
        self.carry = Carry()                 # model state between the chunks of long sequences (TBPTT)
        self.callbacks = list(callbacks)     # called with the trainer after every optimizer step (tests, tools)
        if resume:
            self._restore(checkpoint.load(self.last_path))
        else:
            torch.manual_seed(config.seed * 7919 + 1 + dist.rank)   # noise during training, per process
            random.seed(config.seed)

    def _decoder_gates(self) -> list[GradientGate]:
        """The gates that train.decoder_grad_ramp_steps schedules (one per ladder with a decoder)."""
        if not self.cfg.decoder_grad_ramp_steps:
            return []
        gates = [m.decoder_grad for m in self.model.modules() if isinstance(m, RLadder) and m.has_decoder]
        if not gates:
            name = self.config.model.get("name")
            raise ConfigError(f"train.decoder_grad_ramp_steps = {self.cfg.decoder_grad_ramp_steps} needs a model "
                              f"with a decoder, and model {name!r} has none: set it to 0")
        return gates

    def _link_gates(self) -> list[nn.Parameter]:
        """The learned link gates that train.link_gates_frozen_steps holds at their initial value."""
        if not self.cfg.link_gates_frozen_steps:
            return []
        gates = [p for name, p in self.model.named_parameters() if name.endswith("feedback.gate")]
        if not gates:
            name = self.config.model.get("name")
            raise ConfigError(f"train.link_gates_frozen_steps = {self.cfg.link_gates_frozen_steps} needs learned "
                              f"decoder-to-encoder link gates, and model {name!r} has none (no links, or "
                              f"links.gate = 'none'): set it to 0, or set model.links.gate to 'channel' or 'scalar'")
        return gates

    def _link_switches(self) -> list[GradientSwitch]:
        """The switches on the links that train.link_gradient_tasks closes for the other tasks' backward pass."""
        chosen = self.cfg.link_gradient_tasks
        if not chosen:
            return []
        name = self.config.model.get("name")
        unknown = [label for label in chosen if label not in self.tasks]
        if unknown:
            raise ConfigError(f"train.link_gradient_tasks names {', '.join(map(repr, unknown))}, not a task of this "
                              f"run; its tasks are: {', '.join(self.tasks)}")
        if all(label in chosen for label in self.tasks):
            raise ConfigError(f"train.link_gradient_tasks = {list(chosen)} lists every task of this run, so no "
                              f"task's gradient would be stopped at the links: set it to [] (the same training)")
        if self.cfg.protect_task:
            raise ConfigError("train.link_gradient_tasks and train.protect_task each split the backward pass; "
                              "use one of them")
        if self.cfg.compile:
            raise ConfigError("train.link_gradient_tasks runs in eager mode only (its switch on the links is read "
                              "during the backward pass, which a compiled graph does not do): set train.compile = false")
        if self.dist.world > 1:
            raise ConfigError("train.link_gradient_tasks runs on one process only (its two backward passes bypass "
                              "the gradient averaging of several processes): set it to [] or train with --nproc 1")
        switches = [m.link_grad for m in self.model.modules() if isinstance(m, RLadder) and m.feedback]
        if not switches:
            raise ConfigError(f"train.link_gradient_tasks needs a model with decoder-to-encoder links, and model "
                              f"{name!r} has none: set it to []")
        for switch in switches:
            switch.active = True
        return switches

    def _pair_gradients(self, pair: torch.Tensor, between=None) -> tuple[tuple, tuple]:
        """The gradients of ``pair[0]`` and ``pair[1]`` (two backward passes through one graph; a parameter
        a term does not reach gets None); ``between`` runs between the two passes."""
        scale = self.scaler.scale if self.scaler else (lambda t: t)
        first = torch.autograd.grad(scale(pair[0]), self.params, retain_graph=True, allow_unused=True)
        if between:
            between()
        return first, torch.autograd.grad(scale(pair[1]), self.params, allow_unused=True)

    def _link_split_backward(self, pair: torch.Tensor) -> None:
        """``pair = [the other tasks' terms, the terms of train.link_gradient_tasks]``: the first
        back-propagated with the links' gradient switched off, the second with it on, summed into ``.grad``."""
        def links_open(open_: bool) -> None:
            for switch in self.link_switches:
                switch.open = open_
        links_open(False)
        grads = self._pair_gradients(pair, between=lambda: links_open(True))
        for p, a, b in zip(self.params, *grads):
            p.grad = a if b is None else b if a is None else a + b

    def _check_protect_task(self) -> None:
        main = self.cfg.protect_task
        if not main:
            return
        if main not in self.tasks:
            raise ConfigError(f"train.protect_task = {main!r} is not a task of this run; its tasks are: "
                              f"{', '.join(self.tasks)}")
        if len(self.tasks) < 2:
            raise ConfigError(f"train.protect_task = {main!r} needs at least one other task to protect it from; "
                              f"this run has only {main!r}: set it to ''")
        if self.dist.world > 1:
            raise ConfigError("train.protect_task runs on one process only (its two backward passes bypass the "
                              "gradient averaging of several processes): set it to '' or train with --nproc 1")

    def _protected_backward(self, pair: torch.Tensor) -> None:
        """Gradients of ``pair = [main term, other terms]`` apart, then the others' changed as
        ``train.protect_by`` says and the two summed into ``.grad``."""
        main_raw, other_raw = self._pair_gradients(pair)
        fill = lambda gs: [torch.zeros_like(p) if g is None else g for g, p in zip(gs, self.params)]
        main, other = fill(main_raw), fill(other_raw)
        if self.cfg.protect_by == "norm_cap":
            summed, changed = cap_norms(main, other)
            cos = gradient_cosine(main, other)
        else:
            summed, cos = project_conflict(main, other)
            changed = cos < 0
        for p, g, a, b in zip(self.params, summed, main_raw, other_raw):
            p.grad = None if a is None and b is None else g      # a parameter no cost reaches keeps no gradient
        self.conflict += torch.stack([cos.float(), changed.float().to(cos.device), torch.ones((), device=cos.device)])

    def _instruments(self) -> Instruments:
        parts = self.model.parts()
        groups = {name: list(part.parameters()) for name, part in parts.items()}
        groups.update({f"tasks.{label}": list(task.parameters()) for label, task in self.tasks.items()})
        groups["other"] = list(self.model.parameters())
        return Instruments(parts, groups)

    # ------------------------------------------------------------------ paths and files
    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.pt"

    def _wrap(self, model: nn.Module) -> nn.Module:
        wrapped = model
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = any(h not in self.keep for h in model.head_outputs())
            wrapped = DDP(model, device_ids=ids, find_unused_parameters=unused)
        return wrapped

    @property
    def _graphs(self) -> bool:
        """Whether the compiled forward and backward run as CUDA graphs (compile_mode reduce-overhead)."""
        cfg = self.cfg
        return cfg.compile and cfg.compile_backend == "inductor" and cfg.compile_mode == "reduce-overhead"

    def _compiled(self, fn, graphs: bool = True):
        cfg = self.cfg
        mode = None if cfg.compile_backend != "inductor" else cfg.compile_mode
        if not graphs and mode == "reduce-overhead":
            # The optimizer step is fused by inductor but not captured: its inputs are the gradients the captured
            # backward left in the CUDA-graph pool, and a second graph reading them crashed on an H200 ("accessing
            # tensor output of CUDAGraphs that has been overwritten", docs/benchmarks.md).
            mode = None
        return torch.compile(fn, mode=mode, backend=cfg.compile_backend)

    def _write_run_files(self) -> None:
        if not self.dist.main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.toml", to_toml(self.config))
        meta = {"rladder": rladder_version(), "torch": torch.__version__, "plugins": plugin_versions(self.registry),
                "command": sys.argv, "device": str(self.device), "processes": self.dist.world,
                "precision": str(self.amp or "fp32"), "numerics": numerics(self.device),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2) + "\n")

    def _metrics(self, record: dict[str, Any]) -> None:
        if self.dist.main:
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "tasks": self.tasks.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []},
            "loader": self.train_loader.state_dict(),
            "carry": self.carry.state_dict(),
            "clock": self.clock,
            "world": self.dist.world,
            "best": dict(self.best),
            "config": to_dict(self.config),
            "plugins": plugin_versions(self.registry),
            "rladder": rladder_version(),
        }

    def save_checkpoint(self) -> None:
        if self.dist.world > 1:
            self._check_in_sync()
        if self.dist.main:
            checkpoint.save(self.last_path, self._payload())

    def _check_in_sync(self) -> None:
        """Every process must hold the same weights (student, and any teacher) when a checkpoint is written."""
        tensors = [p.detach() for p in self.model.parameters()]
        tensors += [t for t in self.tasks.state_dict().values() if t.is_floating_point()]
        local = torch.stack([t.double().sum() for t in tensors])
        gathered = [torch.zeros_like(local) for _ in range(self.dist.world)]
        torch.distributed.all_gather(gathered, local)
        differ = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
        if differ:
            raise TrainingStopped(f"the weights of process(es) {differ} differ from process 0's at step {self.step}; "
                                  f"something updates parameters outside the optimizer step")

    def _save_best(self, value: float) -> None:
        self.best.update(value=value, step=self.step)
        if self.dist.main:
            checkpoint.save(self.best_path, {"step": self.step, "model": self.model.state_dict(),
                                             "tasks": self.tasks.state_dict(), "best": dict(self.best),
                                             "config": to_dict(self.config)})

    def _restore(self, state: Mapping[str, Any]) -> None:
        if int(state.get("world", 1)) != self.dist.world:
            raise ConfigError(f"{self.last_path} was written by a run with {state.get('world', 1)} process(es); "
                              f"resume it with the same number (--nproc {state.get('world', 1)}), not {self.dist.world}")
        self.model.load_state_dict(state["model"])
        self.tasks.load_state_dict(state["tasks"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        try:
            self.train_loader.load_state_dict(state["loader"])
        except (KeyError, TypeError, ValueError) as exc:
            saved = state.get("config", {}).get("loader", {}).get("name", "?")
            raise ConfigError(f"{self.last_path} holds the data position of loader {saved!r}, which loader "
                              f"{self.config.loader.get('name', 'memory')!r} cannot continue from ({type(exc).__name__}: "
                              f"{exc}); resume with the run's own config (`rladder resume RUN_DIR` does)") from None
        self.carry.load_state_dict(list(state.get("carry", [])), self.model,
                                   torch.zeros((), device=self.device))
        self.step, self.best = int(state["step"]), dict(state["best"])
        self.clock = float(state.get("clock", 0.0))
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_as_tuple(state["rng"]["python"]))
        if self.device.type == "cuda" and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self._truncate_metrics()

    def _truncate_metrics(self) -> None:
        """Drop log lines written after the checkpoint by a run that died before its next one."""
        path = self.run_dir / "metrics.jsonl"
        if not self.dist.main or not path.is_file():
            return
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
        write_text(path, "".join(ln + "\n" for ln in lines))

    # ------------------------------------------------------------------ the loop
    def _batches(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.train_loader)

    def val_loader(self) -> Loader:
        if self._val_loader is None:
            self._val_loader = make_loader(self.run, self.config, "val", False, self.dist, self.registry,
                                           device=self.device)
        return self._val_loader

    def validate(self) -> dict[str, float]:
        return evaluate_all(self.model, self.tasks, self.run.spec, self.val_loader(), self.device, self.amp,
                            self.cfg.eval_batches)

    def fit(self) -> dict[str, Any]:
        """Train up to train.steps; returns the last validation results."""
        cfg = self.cfg
        if self.step == 0:
            self._write_run_files()
        elif self.dist.main:
            meta = json.loads((self.run_dir / "meta.json").read_text())
            entry = {"step": self.step, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
            here, before = numerics(self.device), meta.get("numerics")
            if before and here != before:     # the run goes on, but no longer bit for bit as on its first machine
                entry["numerics"] = here
                self.log(f"note: {self.run_dir} was started on {describe_numerics(before)} and resumes on "
                         f"{describe_numerics(here)}: from here it is not bit-identical to an uninterrupted run "
                         "(docs/results.md, 'Same code, another machine')")
            meta.setdefault("resumed", []).append(entry)
            write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
            self.log(f"resuming {self.run_dir} from {self.last_path} at step {self.step} of {cfg.steps}")
        if self.step >= cfg.steps:
            self.log(f"nothing to do: the run is at step {self.step} of {cfg.steps}")
            return {}
        if cfg.max_minutes and self.clock >= 60 * cfg.max_minutes:
            self.log(f"nothing to do: the run used its train.max_minutes = {cfg.max_minutes:g} "
                     f"({self.clock / 60:.1f} min) at step {self.step}; to train on, raise train.max_minutes in "
                     f"{self.run_dir / 'config.toml'} and resume")
            return {}
        session_start, clock_start = time.perf_counter(), self.clock
        self._eta = _Rate((session_start, self.step))
        previous = self._install_interrupt_handler()
        bar = self._progress_bar()
        batches = self._batches()
        self.model.train()
        interval = _Interval()
        val: dict[str, float] = {}
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                batch = to_device(next(batches), self.device, non_blocking=True)
                t_data = time.perf_counter() - t0
                loss, parts = self._train_step(batch)
                self.step += 1
                interval.add(loss, parts, len(batch["x"]) * self.dist.world, t_data, time.perf_counter() - t0)
                self.clock = clock_start + time.perf_counter() - session_start
                if cfg.max_minutes and self.dist.world > 1:   # one clock for the deadline and the schedule
                    self.clock = largest(self.clock, self.device)
                last = self.step == cfg.steps or self._deadline_reached()
                for callback in self.callbacks:
                    callback(self)
                check_now = self.device.type == "cpu" or self.step % cfg.log_every == 0 or \
                    self.step % cfg.eval_every == 0 or self.step % cfg.checkpoint_every == 0 or last
                if check_now and not all_true(interval.finite(), self.device):
                    raise TrainingStopped(self._nonfinite_message(interval))
                if self.step % cfg.log_every == 0 or last:
                    record = interval.record(self.step, float(self.scheduler.get_last_lr()[0]), self.dist.world)
                    record.update(self.instruments.record(self.dist.world))
                    record.update({f"{label}/weight": task.weight * float(task.weight_scale)
                                   for label, task in self.tasks.items() if task.weight_ramp is not None})
                    if self.decoder_gates:
                        record["decoder_grad/scale"] = float(self.decoder_gates[0].scale)
                    if self.cfg.protect_task:
                        cos, changed, _ = (self.conflict / self.conflict[2].clamp_min(1)).tolist()
                        key = "protect/capped" if self.cfg.protect_by == "norm_cap" else "protect/projected"
                        record.update({"protect/cosine": cos, key: changed})
                        self.conflict.zero_()
                    self._metrics(record)
                    self._report(bar, record)
                    interval = _Interval()
                if self.step % cfg.eval_every == 0 or last:
                    val = self._validate_and_track()
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_checkpoint()
                if last and self.step < cfg.steps:
                    self.log(f"train.max_minutes = {cfg.max_minutes:g} reached at step {self.step} of {cfg.steps}: "
                             f"stopped there, checkpoints saved")
                    self._record_deadline()
                    break
                if bar is not None:
                    bar.update(1)
                if (self._stop_requested if self.dist.world == 1 else any_true(self._stop_requested, self.device)):
                    self.save_checkpoint()
                    raise Interrupted(f"interrupted at step {self.step}; checkpoint saved in {self.last_path}. "
                                      f"Continue with: rladder resume {self.run_dir}")
        finally:
            if bar is not None:
                bar.close()
            self._restore_interrupt_handler(previous)
        return val

    def schedule_step(self) -> int:
        """The step that the step-counted schedules (task weight ramps, decoder_grad_ramp_steps,
        link_gates_frozen_steps) are at: the step count, or with ``schedule_by = "time"`` the share of
        max_minutes used times train.steps where that is further on, as the lr decay (``lr_factor``)."""
        cfg = self.cfg
        if cfg.schedule_by == "time" and cfg.max_minutes:
            return max(self.step, int(self.clock / (60 * cfg.max_minutes) * cfg.steps))
        return self.step

    def _deadline_reached(self) -> bool:
        """Whether train.max_minutes is used up (every process stops at the same step)."""
        if not self.cfg.max_minutes:
            return False
        return self.clock >= 60 * self.cfg.max_minutes      # the same clock in every process (fit)

    def _record_deadline(self) -> None:
        if self.dist.main:
            meta = json.loads((self.run_dir / "meta.json").read_text())
            meta["stopped_at_deadline"] = {"step": self.step, "minutes": round(self.clock / 60, 2)}
            write_text(self.run_dir / "meta.json", json.dumps(meta, indent=2) + "\n")

    def _eager_forward_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model over the batch and the weighted sum of the task costs (the part that is compiled)."""
        outputs = self.carry.run(self.model, batch, self.run.spec, self.keep, forward=self.forward_model)
        return total_loss(self.tasks, outputs, batch, self.split_first)

    def _train_step(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = corrupt(batch, self.cfg.input_noise)
        at = self.schedule_step()
        for task in self.tasks.values():
            task.start_step(at)
        for gate in self.decoder_gates:
            gate.set(min(1.0, at / self.cfg.decoder_grad_ramp_steps))
        with autocast(self.device, self.amp):
            batch = prepare(self.tasks, self.model, batch)
            self.instruments.active = not self.cfg.compile     # forward hooks stay out of compiled graphs
            if self._graphs:      # a new training step: the previous step's graph outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            try:
                loss, parts = self._forward_loss(batch)
            finally:
                self.instruments.active = False
        self.optimizer.zero_grad(set_to_none=True)
        if self.cfg.protect_task or self.link_switches:
            if self.cfg.protect_task:
                self._protected_backward(loss)
            else:
                self._link_split_backward(loss)
            loss = loss.sum()
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
        elif self.scaler:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if at < self.cfg.link_gates_frozen_steps:
            for gate in self.link_gates:     # no gradient: Adam leaves the gate, and its state, untouched
                gate.grad = None
        self.instruments.clip(self.cfg.clip_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self._optimizer_step()
        self.scheduler.step()
        for task in self.tasks.values():
            task.after_optimizer_step(self.model, self.step + 1)
        return loss.detach(), parts

    def _nonfinite_message(self, interval: _Interval) -> str:
        bad = [k for k, v in interval.parts.items() if not torch.isfinite(v).all()]
        where = f" (tasks: {', '.join(bad)})" if bad else ""
        kept = f"the last good checkpoint is {self.last_path}" if self.last_path.is_file() else \
            "no checkpoint had been written yet"
        return (f"the loss became NaN or inf by step {self.step}{where}; training stopped and {kept}. "
                f"Lower train.lr, keep train.clip_grad_norm > 0, or check the data for NaN values.")

    def _validate_and_track(self) -> dict[str, float]:
        val = self.validate()
        self._metrics({"step": self.step, "split": "val", **val})
        key = self.best["metric"]
        if key not in val:
            raise ConfigError(f"train.best_metric = {key!r} is not a validation metric; available: "
                              f"{', '.join(sorted(val))}")
        value, old = val[key], self.best["value"]
        better = old is None or (value < old if self.cfg.best_mode == "min" else value > old)
        if better and math.isfinite(value):
            self._save_best(value)
        self.log(f"step {self.step}: validation " + ", ".join(f"{k} {val[k]:.4g}" for k in headline_keys(self.tasks, val)))
        return val

    # ------------------------------------------------------------------ progress and Ctrl-C
    def _progress_bar(self):
        if not (self.progress and self.dist.main):
            return None
        from tqdm import tqdm
        return tqdm(total=self.cfg.steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                    file=sys.stderr)

    def _report(self, bar, record: Mapping[str, Any]) -> None:
        if not self.dist.main:
            return
        if bar is not None:
            bar.set_postfix(loss=f"{record['loss']:.4g}", samples_s=f"{record['samples_per_s']:.0f}", refresh=False)
            return
        done = self.step / self.cfg.steps
        eta = self._eta.remaining(self.step, self.cfg.steps)
        if self.cfg.max_minutes:
            eta = min(eta, max(0.0, 60 * self.cfg.max_minutes - self.clock))
        self.log(f"step {self.step}/{self.cfg.steps} ({100 * done:.0f}%) loss {record['loss']:.4g} "
                 f"{record['samples_per_s']:.0f} samples/s, data wait {100 * record['data_wait']:.1f}%, "
                 f"ETA {_duration(eta)}")

    def _install_interrupt_handler(self):
        if not hasattr(signal, "SIGINT") or _not_main_thread():
            return None

        def handler(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("Ctrl-C: finishing this step and saving a checkpoint (press again to abort without saving)")
        return signal.signal(signal.SIGINT, handler)

    @staticmethod
    def _restore_interrupt_handler(previous) -> None:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class _Interval:
    """Sums over a log interval: loss, task costs, samples, time, time waiting for data."""

    def __init__(self):
        self.loss = torch.zeros(())
        self.parts: dict[str, torch.Tensor] = {}
        self.steps = self.samples = 0
        self.data = self.total = 0.0

    def add(self, loss, parts, samples, t_data, t_total):
        self.loss = self.loss.to(loss.device) + loss.float()
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0) + v.float()
        self.steps += 1
        self.samples += samples
        self.data += t_data
        self.total += t_total

    def finite(self) -> bool:
        return bool(torch.isfinite(self.loss))

    def record(self, step: int, lr: float, world: int = 1) -> dict[str, Any]:
        """Averages over the interval (and over processes: every process calls this at the same step)."""
        n = max(self.steps, 1)
        keys = sorted(self.parts)
        sums = torch.stack([self.loss.float(), *[self.parts[k].float().reshape(()) for k in keys]])
        if world > 1:
            torch.distributed.all_reduce(sums)
            sums = sums / world
        return {"step": step, "split": "train", "loss": float(sums[0]) / n,
                **{f"{k}/loss": float(v) / n for k, v in zip(keys, sums[1:])},
                "lr": lr, "samples_per_s": self.samples / max(self.total, 1e-9),
                "seconds_per_step": self.total / n, "data_wait": self.data / max(self.total, 1e-9)}


class _Rate:
    """Steps per second over the last few log lines (wall clock, validations included): an ETA
    that does not swing with one slow or fast interval."""

    def __init__(self, start: tuple[float, int], window: int = 6):
        self.points: list[tuple[float, int]] = [start]
        self.window = window

    def remaining(self, step: int, total: int) -> float:
        now = time.perf_counter()
        self.points = (self.points + [(now, step)])[-self.window:]
        (t0, s0), (t1, s1) = self.points[0], self.points[-1]
        if s1 <= s0 or t1 <= t0:
            return float("nan")
        return (total - step) * (t1 - t0) / (s1 - s0)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _not_main_thread() -> bool:
    import threading
    return threading.current_thread() is not threading.main_thread()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"

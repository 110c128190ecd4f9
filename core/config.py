"""Run configuration: attrs classes, TOML files and `--set` overrides.

Precedence (later wins), the one rule everywhere:
    component and section defaults  <  config files, in the order given  <  `--set a.b=c`, in order.
Tables merge key by key; any other value (arrays included) is replaced whole. A `--set` value
is read as a TOML value (`--set train.lr=2e-3`, `--set model.decoder=false`,
`--set 'train.betas=[0.9, 0.99]'`); a bare word is a string (`--set data.name=synthetic`).
List items are addressed by index (`--set model.levels.0.encoder.channels=16`). A task set to
false is removed (`--set tasks.predict=false`), which is how task ablations are written.

A component is a table `{name = "<registry name>", <its options>}`; `resolve` checks every
option against the component's attrs class and fills in the defaults, so the resolved config
(`--print-config`, saved with every run) lists every value the run uses.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from rladder.registry import ConfigError, OptionError, Registry, get_registry, option, structure, unstructure
from . import tomlout
from rladder.registry.options import fields_of, in_open_unit, non_negative, positive

Precision = Literal["auto", "fp32", "bf16", "fp16"]


@attrs.frozen
class TrainConfig:
    """Optimisation and bookkeeping of `rladder train` (Adam, spec section 4.1.3)."""

    steps: int = option(2000, help="Optimizer steps in all.", validator=positive)
    batch_size: int = option(32, help="Global batch size (split across processes).", validator=positive)
    lr: float = option(1e-3, help="Peak learning rate of Adam.", validator=positive)
    betas: tuple[float, float] = option((0.9, 0.999), help="Adam betas.")
    weight_decay: float = option(0.0, help="AdamW-style decoupled weight decay.", validator=non_negative)
    schedule: Literal["constant", "linear_decay", "cosine"] = option(
        "linear_decay", help="Learning-rate schedule after warm-up (linear_decay: to 0 over the last part).")
    decay_start: float = option(0.67, help="linear_decay: fraction of training after which lr decays to 0.",
                                validator=in_open_unit)
    warmup_steps: int = option(0, help="Linear warm-up steps.", validator=non_negative)
    max_minutes: float = option(0.0, help="Wall-clock budget of training in minutes (0 = none): at the deadline the "
                                          "run validates, saves its checkpoints and ends as if it had reached "
                                          "train.steps (then the test evaluation and pictures).",
                                validator=non_negative)
    schedule_by: Literal["steps", "time"] = option(
        "steps", help="What the schedule's progress follows: the step count (steps), or the larger of the step "
                      "fraction and the fraction of max_minutes used (time: the lr decay ends at the deadline, and "
                      "the step-counted ramps (task weight_ramp_steps, decoder_grad_ramp_steps, "
                      "link_gates_frozen_steps) count max_minutes as train.steps; a run is then no longer "
                      "bit-reproducible).")
    decoder_grad_ramp_steps: int = option(
        0, help="Steps over which the gradient that the decoders send back into the encoder (through e_l(t) -> "
                "decoder l) grows linearly from 0 to its full value (0 = full from the start). The decoders and "
                "their heads are trained at full weight from step 0; the encoder is first trained by the costs "
                "that reach it directly. Needs a model with a decoder.", validator=non_negative)
    link_gates_frozen_steps: int = option(
        0, help="Steps during which the learned decoder-to-encoder link gates (links.gate = 'scalar' or 'channel') "
                "are not trained and keep their initial value: with gate_init = 0 (the default) the RLadder runs as "
                "its no-link ablation until then, and the links are first learned with every task at the weight "
                "it has at that step. 0 = trained from the start.", validator=non_negative)
    protect_task: str = option(
        "", help="The label of a main task (for example 'classify') that the other tasks' gradient may not "
                 "overrule: each step the main task's gradient and the others' are computed apart (two backward "
                 "passes: 1.6-1.7 times the step time, measured on CPU), the others' is changed as "
                 "train.protect_by says, and the two are summed. '' = off. One process only.")
    protect_by: Literal["projection", "norm_cap"] = option(
        "projection", help="projection: when the others' gradient points against the main task's (a negative dot "
                           "product over all parameters), its opposing component is removed (one-sided gradient "
                           "projection). norm_cap: in every parameter tensor that the main task trains, the others' "
                           "gradient is scaled down to at most the main task's norm there.")
    link_gradient_tasks: tuple[str, ...] = option(
        (), help="Labels of the tasks whose gradient flows back through the decoder-to-encoder links d_l(t-1) -> "
                 "encoder l (and so trains the decoders through them); () = every task. With ['predict'] the other "
                 "tasks (classification) train the encoder and the link gates but reach the decoders only as far as "
                 "their own heads read them: the decoders learn from prediction what the encoder then reads. Two "
                 "backward passes per step (1.7 times the OMM RLadder's step time, measured on CPU). Needs a model "
                 "with links; one process, eager mode (not with train.compile).")
    clip_grad_norm: float = option(1.0, help="Clip the gradient norm to this (0 = off).", validator=non_negative)
    device: str = option("auto", help="auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...")
    precision: Precision = option("auto", help="auto (bf16 autocast on GPU, fp32 on CPU), fp32, bf16, fp16.")
    threads: int = option(0, help="torch CPU threads (0 = leave torch's default).", validator=non_negative)
    compile: bool = option(False, help="torch.compile the training step's forward pass and costs (slow to start; "
                                       "mostly worth it on GPU). With compile_mode = 'reduce-overhead' on a GPU, "
                                       "the compiled graphs run as CUDA graphs.")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = option(
        "default", help="torch.compile mode of the step (reduce-overhead: CUDA graphs on a GPU).")
    compile_backend: str = option("inductor", help="torch.compile backend ('aot_eager' traces without generating "
                                                   "code: a quick check that the step compiles).")
    compile_optimizer: bool = option(False, help="Also compile the optimizer step (Adam with a tensor learning rate, "
                                                 "capturable): fused by inductor, not run as a CUDA graph.")
    channels_last: bool = option(False, help="channels_last memory format for 2-D models (GPU).")
    log_every: int = option(50, help="Steps between log lines in metrics.jsonl.", validator=positive)
    eval_every: int = option(500, help="Steps between validations (and best-checkpoint updates).",
                             validator=positive)
    eval_batches: int = option(0, help="Batches per validation (0 = the whole split).", validator=non_negative)
    checkpoint_every: int = option(500, help="Steps between checkpoints.", validator=positive)
    best_metric: str = option("", help="Validation metric that picks the best checkpoint, e.g. "
                                       "'classify/error' (default: the total validation loss).")
    best_mode: Literal["min", "max"] = option("min", help="Whether a smaller or larger best_metric is better.")
    input_noise: float = option(0.0, help="Std of Gaussian noise added to the input x in training (the "
                                          "corrupted path of denoising and mean-teacher students).",
                                validator=non_negative)


@attrs.frozen
class LabelsConfig:
    """Which training samples keep their labels (semi-supervised runs, `rladder.core.labels`)."""

    count: int = option(0, help="Labelled training samples, class-balanced (0 = every sample is labelled).",
                        validator=non_negative)
    fraction: float = option(0.25, help="Share of each training batch that is labelled (when unlabeled = true).")
    unlabeled: bool = option(True, help="Also train on the unlabelled samples (false: the labelled subset only).")
    seed: int = option(0, help="Seed of the labelled subset.")

    def __attrs_post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"'fraction' must lie in [0, 1], got {self.fraction}")


@attrs.frozen
class RunConfig:
    """One run: data, model, tasks, loader, training, seed."""

    data: dict[str, Any] = option(help="The dataset: {name = ..., <options>}.", kind="dataset")
    model: dict[str, Any] = option(help="The model: {name = ..., <options>}.", kind="model")
    tasks: dict[str, dict[str, Any]] = option(
        factory=dict, help="Tasks by label: [tasks.<label>] name = ... (name defaults to the label).",
        kind="task", many=True)
    loader: dict[str, Any] = option(factory=lambda: {"name": "memory"}, help="How batches are made.",
                                    kind="loader")
    train: TrainConfig = option(factory=TrainConfig, help="Optimisation and bookkeeping.")
    labels: LabelsConfig = option(factory=LabelsConfig, help="Labelled / unlabelled training data.")
    seed: int = option(0, help="Seed of model initialisation, data order and noise.")


# --------------------------------------------------------------------------- reading
def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist (give the path of a TOML file, "
                          f"for example configs/omm/rladder_quick.toml)")
    try:
        return tomllib.loads(toml_text(p, f"config file {str(p)!r}"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def toml_text(path: Path, what: str) -> str:
    """The text of a TOML file, which must be UTF-8 (a ConfigError names ``what`` otherwise); a leading
    byte-order mark, which some editors write, is dropped."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} cannot be "
                          f"decoded); a config must be a UTF-8 TOML file: save it as UTF-8") from None


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; other values are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict[str, Any], expr: str) -> dict[str, Any]:
    """Apply one `a.b.c=value` override (see module docstring)."""
    if "=" not in expr:
        raise ConfigError(f"--set {expr!r}: expected KEY=VALUE, for example --set train.lr=2e-3")
    key, _, text = expr.partition("=")
    parts = [p for p in key.strip().split(".")]
    if not key.strip() or any(not p for p in parts):
        raise ConfigError(f"--set {expr!r}: the key must be a dotted path such as train.lr")
    out = copy.deepcopy(raw)
    node: Any = out
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, parts[: i + 1], expr)
    last = parts[-1]
    value = parse_value(text.strip())
    if isinstance(node, list):
        idx = _index(node, last, parts, expr)
        node[idx] = value
    else:
        node[last] = value
    return out


def _index(node: list, part: str, parts: Sequence[str], expr: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"--set {expr!r}: {'.'.join(parts)} indexes a list of {len(node)} items; "
                          f"use an index 0..{len(node) - 1}")
    return int(part)


def _child(node: Any, part: str, parts: Sequence[str], expr: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, parts, expr)]
    if part not in node:
        node[part] = {}
    elif not isinstance(node[part], dict | list):
        raise ConfigError(f"--set {expr!r}: {'.'.join(parts)} is a value ({node[part]!r}), not a table")
    return node[part]


def load_raw(paths: Sequence[str | Path], sets: Sequence[str] = ()) -> dict[str, Any]:
    """Merge config files (later wins) and apply `--set` overrides (later wins)."""
    raw: dict[str, Any] = {}
    for path in paths:
        raw = merge(raw, read_toml(path))
    for expr in sets:
        raw = apply_set(raw, expr)
    return raw


# --------------------------------------------------------------------------- resolving
def resolve(raw: Mapping[str, Any], registry: Registry | None = None) -> RunConfig:
    """Check every section and component option, fill in every default."""
    reg = registry or get_registry()
    raw = dict(raw)
    tasks = raw.get("tasks", {})
    if isinstance(tasks, Mapping):  # `tasks.<label> = false` removes a task (task ablations in overlays)
        raw["tasks"] = {label: ({"name": label, **t} if isinstance(t, Mapping) and "name" not in t else t)
                        for label, t in tasks.items() if t is not False}
    config = structure(RunConfig, raw, path="", what="the run config")
    return fill_components(config, reg)


def fill_components(value: Any, registry: Registry, path: str = "") -> Any:
    """Resolve every component table inside attrs instances (fields marked with a kind)."""
    if not attrs.has(type(value)):
        return value
    changes = {}
    for f in fields_of(type(value)):
        current = getattr(value, f.name)
        where = f"{path}.{f.name}" if path else f.name
        kind = f.metadata.get("kind")
        if kind and current is not None:
            if f.metadata.get("many"):
                changes[f.name] = {k: _resolve_table(registry, kind, t, f"{where}.{k}") for k, t in current.items()}
            else:
                changes[f.name] = _resolve_table(registry, kind, current, where)
        elif isinstance(current, tuple | list):
            changes[f.name] = type(current)(fill_components(v, registry, f"{where}[{i}]")
                                            for i, v in enumerate(current))
        elif attrs.has(type(current)):
            changes[f.name] = fill_components(current, registry, where)
    return attrs.evolve(value, **changes)


def _resolve_table(registry: Registry, kind: str, table: Any, where: str) -> dict[str, Any]:
    comp, options = registry.resolve(kind, table, where)
    options = fill_components(options, registry, where)
    return {"name": comp.name, **unstructure(options)}


# --------------------------------------------------------------------------- writing
def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def to_dict(config: RunConfig) -> dict[str, Any]:
    return _drop_none(unstructure(config))


def to_toml(config: RunConfig | Mapping[str, Any]) -> str:
    data = config if isinstance(config, Mapping) else to_dict(config)
    body = tomlout.dumps(_order(_drop_none(data)))
    return "# rladder resolved config (every default filled in)\n" + body


def _order(data: Mapping[str, Any]) -> dict[str, Any]:
    """Put `seed` first and `name` first in every component table, for reading."""
    keys = sorted(data, key=lambda k: (k not in ("seed", "name"), 0))
    return {k: (_order(data[k]) if isinstance(data[k], Mapping) else data[k]) for k in keys}


def load_config(paths: Sequence[str | Path], sets: Sequence[str] = (), registry: Registry | None = None) -> RunConfig:
    """Files + overrides -> a resolved RunConfig (the one documented precedence)."""
    if not paths:
        raise ConfigError("no config file given")
    return resolve(load_raw(paths, sets), registry)


def from_dict(data: Mapping[str, Any], registry: Registry | None = None) -> RunConfig:
    """A RunConfig from a resolved dict (as saved with runs and checkpoints)."""
    try:
        return resolve(data, registry)
    except OptionError as exc:
        raise ConfigError(f"the saved config no longer matches the installed plugins: {exc}") from None

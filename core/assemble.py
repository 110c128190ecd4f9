"""From names to objects: a LadderSpec becomes an RLadder, a run config becomes a Run.

A ``model`` component's factory returns a ``LadderSpec`` (levels of registry names plus heads
and the ablation switches); ``build_ladder`` asks the registry for every cell, threads the
shapes from level to level, and fails before any training with a ``ContractError`` that names
the offending config field when channels, shapes or down-sampling do not fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from torch import nn

from rladder.registry import ConfigError, ContractError, Registry, get_registry, option

from .heads import Head, HeadSpec
from .interfaces import DataSpec, Dataset, Model, Shape, Task, TaskOptions
from .ladder import FeedbackLink, FeedbackSpec, Level, RLadder


@attrs.frozen
class LevelSpec:
    """One level: an encoder cell and a decoder cell, each a table ``{name = ..., <options>}``."""

    encoder: dict[str, Any] = option(help="The encoder cell: {name = ..., <options>}.", kind="encoder_cell")
    decoder: dict[str, Any] | None = option(None, help="The decoder cell: {name = ..., <options>}.",
                                            kind="decoder_cell")


@attrs.frozen
class LadderSpec:
    """What a ``model`` component returns: levels (bottom first), heads and ablation switches."""

    levels: tuple[LevelSpec, ...] = option(help="Levels, bottom first.")
    heads: tuple[HeadSpec, ...] = option((), help="Heads reading named outputs.")
    decoder: bool = option(True, help="false removes the decoder (the 'hierarchical RNN').")
    feedback: bool = option(True, help="false removes the decoder-to-encoder links d_l(t-1) -> encoder l.")
    links: FeedbackSpec = option(factory=FeedbackSpec, help="How d_l(t-1) enters encoder l (norm, learned gate, "
                                                            "scale, detach).")


def build_ladder(spec: LadderSpec, data: DataSpec, registry: Registry | None = None, path: str = "model") -> RLadder:
    """Build an RLadder from a LadderSpec for inputs described by ``data``."""
    reg = registry or get_registry()
    input_shape = tuple(data.step_shape)
    if not spec.levels:
        raise ContractError(f"{path}.levels: a ladder needs at least one level")
    shapes: list[Shape] = []
    encoders = []
    in_shape = input_shape
    for l, level in enumerate(spec.levels):
        where = f"{path}.levels[{l}].encoder"
        cell = _build(reg, "encoder_cell", level.encoder, where, in_shape=in_shape,
                      top_down=spec.decoder and spec.feedback)
        out_shape = tuple(cell.out_shape)
        _check_downsampling(input_shape, in_shape, out_shape, where)
        encoders.append(cell)
        shapes.append(out_shape)
        in_shape = out_shape
    decoders: list[Any] = [None] * len(shapes)
    if spec.decoder:
        for l in reversed(range(len(shapes))):
            where = f"{path}.levels[{l}].decoder"
            table = spec.levels[l].decoder
            if table is None:
                raise ContractError(f"{where}: level {l} has no decoder cell, but {path}.decoder = true. "
                                    f"Give it one (for example {{name = \"vanilla\"}}) or set {path}.decoder = false.")
            above = shapes[l + 1] if l + 1 < len(shapes) else None
            decoders[l] = _build(reg, "decoder_cell", table, where, lateral_shape=shapes[l], top_down_shape=above)
    links = [FeedbackLink(spec.links, s) if spec.decoder and spec.feedback else None for s in shapes]
    levels = [Level(e, d, f) for e, d, f in zip(encoders, decoders, links)]
    heads = build_heads(spec.heads, shapes, data, decoder=spec.decoder, path=f"{path}.heads")
    return RLadder(levels, heads, input_shape=input_shape, decoder=spec.decoder, feedback=spec.feedback)


def build_heads(specs: Sequence[HeadSpec], shapes: Sequence[Shape], data: DataSpec, decoder: bool,
                path: str) -> dict[str, nn.Module]:
    heads: dict[str, nn.Module] = {}
    for i, h in enumerate(specs):
        where = f"{path}[{i}]"
        part, _, idx = h.source.partition(".")
        if part not in ("encoder", "decoder") or not idx.lstrip("-").isdigit():
            raise ContractError(f"{where}.source: {h.source!r} is not 'encoder.<l>' or 'decoder.<l>'")
        level = int(idx)
        if not -len(shapes) <= level < len(shapes):
            raise ContractError(f"{where}.source: {h.source!r} names level {level}, but the ladder has "
                                f"{len(shapes)} levels (0..{len(shapes) - 1}, or -1 for the top)")
        if part == "decoder" and not decoder:
            raise ContractError(f"{where}.source: head {h.name!r} reads {h.source!r}, but the model has no "
                                f"decoder (model.decoder = false); read an encoder output or remove the head")
        if h.out == "classes":
            if not data.num_classes:
                raise ContractError(f"{where}.out: head {h.name!r} wants 'classes' but the dataset has no classes")
            out = data.num_classes
        elif h.out == "input":
            out = data.step_shape[0]
        else:
            out = h.out
        if h.name in heads:
            raise ContractError(f"{where}.name: two heads are named {h.name!r}")
        heads[h.name] = Head(h.kind, h.source, shapes[level], out, h.detach)
    return heads


def _build(reg: Registry, kind: str, table: Mapping[str, Any], where: str, **context: Any) -> Any:
    return _build_with_options(reg, kind, table, where, **context)[0]


def _build_with_options(reg: Registry, kind: str, table: Mapping[str, Any], where: str,
                        **context: Any) -> tuple[Any, Any]:
    """The component built from ``table`` and its resolved options; a factory that rejects its context
    (ValueError or ContractError) becomes a ContractError located at ``where`` (a message that already
    starts with ``where`` is kept)."""
    try:
        comp, options = reg.resolve(kind, table, path=where)
        return comp.factory(options, **context), options
    except ContractError as exc:
        if str(exc).startswith((f"{where}:", f"{where}.", f"{where}[")):
            raise
        raise ContractError(f"{where}: {exc}") from exc
    except ConfigError:
        raise
    except ValueError as exc:
        raise ContractError(f"{where}: {exc}") from exc


def _check_downsampling(input_shape: Shape, in_shape: Shape, out_shape: Shape, where: str) -> None:
    """Spatial sizes must shrink by whole factors; name the total factor when they do not."""
    if len(out_shape) < 2 or len(in_shape) != len(out_shape):
        return
    for axis, (a, b) in enumerate(zip(in_shape[1:], out_shape[1:])):
        if b == 0 or (a % b and b % a):
            total = input_shape[1 + axis] / max(b, 1)
            raise ContractError(
                f"{where}: spatial size {a} becomes {b} at this level, not a whole factor. The input size "
                f"{input_shape[1:]} must be divisible by the total down-sampling (about {total:g}x here).")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@attrs.define
class Run:
    """The objects of a run, built from a resolved config."""

    dataset: Dataset
    spec: DataSpec
    model: Model
    tasks: dict[str, Task]


def build_model(table: Mapping[str, Any], data: DataSpec, registry: Registry | None = None) -> Model:
    """A model from its config table: the component returns a LadderSpec or a ``Model``."""
    reg = registry or get_registry()
    comp, options = reg.resolve("model", table, path="model")
    try:
        made = comp.factory(options, spec=data)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ContractError(f"model: {comp.name!r} cannot be built for this data: {exc}") from exc
    if isinstance(made, LadderSpec):
        return build_ladder(made, data, reg)
    if isinstance(made, Model):
        if tuple(made.input_shape) != tuple(data.step_shape):
            raise ContractError(f"model {comp.name!r} (from {comp.provider}) takes steps of shape "
                                f"{tuple(made.input_shape)}, but the data's steps are {tuple(data.step_shape)}")
        return made
    hint = (" An nn.Module must subclass rladder.core.Model (output_names, init_state, step; see "
            "core/interfaces.py)." if isinstance(made, nn.Module) else "")
    raise ContractError(f"model {comp.name!r} (from {comp.provider}) returned {type(made).__name__}, "
                        f"not a LadderSpec or a rladder.core.Model.{hint}")


def build_tasks(tables: Mapping[str, Mapping[str, Any]], data: DataSpec, model: Model,
                registry: Registry | None = None) -> dict[str, Task]:
    """Every task, checked against what the model outputs and what the data holds."""
    reg = registry or get_registry()
    names = set(model.output_names())
    tasks: dict[str, Task] = {}
    for label, table in tables.items():
        where = f"tasks.{label}"
        task, options = _build_with_options(reg, "task", table, where, spec=data, label=label)
        if isinstance(options, TaskOptions) and options.weight_ramp_steps > 0:
            task.weight_ramp = options.weight_factor     # the trainer puts each step's weight in force
        needs = task.needs()
        missing = [n for n in needs.outputs if model.canonical(n) not in names]
        if missing:
            hint = ""
            if any(n.startswith("decoder.") or n.startswith("heads.") for n in missing):
                hint = (" A model without decoder has no decoder outputs and no heads on them;"
                        " remove this task or use a model with a decoder.")
            raise ContractError(f"{where}: task {table.get('name', label)!r} reads {', '.join(missing)}, which the "
                                f"model does not produce. The model produces: {', '.join(sorted(names))}.{hint}")
        absent = [k for k in needs.batch if k not in data.keys and k != "x_uncorrupted"]
        if absent:
            raise ContractError(f"{where}: task {table.get('name', label)!r} needs batch key(s) "
                                f"{', '.join(absent)}, which the dataset does not provide "
                                f"(it provides {', '.join(data.keys)}).")
        task.bind(model)
        tasks[label] = task
    return tasks


def build_run(config, registry: Registry | None = None) -> Run:
    """Dataset (lazy: only its DataSpec is computed), model and tasks of a resolved RunConfig."""
    import torch

    reg = registry or get_registry()
    dataset = _build(reg, "dataset", config.data, "data")
    torch.manual_seed(config.seed)
    model = build_model(config.model, dataset.spec, reg)
    tasks = build_tasks(config.tasks, dataset.spec, model, reg)
    return Run(dataset, dataset.spec, model, tasks)

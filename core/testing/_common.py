"""What every check of the conformance kit shares: labels, skips, options, tensor walks."""

from __future__ import annotations

import contextlib
import math
import tomllib
import unittest
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from rladder.registry import Component, ContractError, structure, unstructure

from .. import tomlout

# What a factory raises for a context it cannot handle (an input shape, a kind of data): the kit then
# tries the next probe, `rladder check` names the config field.
REJECTS = (ValueError, ContractError)


class Skipped(unittest.SkipTest):
    """A check that cannot run here (a dataset whose files are missing); pytest reports a skip."""


@contextlib.contextmanager
def calling(who: str, what: str, hint: str = "", allow: tuple[type[BaseException], ...] = ()):
    """Turn an exception raised by the component's code into one sentence naming the component
    (exceptions of the types in ``allow`` pass unchanged)."""
    try:
        yield
    except (AssertionError, unittest.SkipTest, *allow):
        raise
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{who}: {what} raises {type(exc).__name__}: {exc}{hint}") from exc


def label(comp: Component) -> str:
    return f"{comp.kind} {comp.name!r} ({comp.provider})"


def example(comp: Component, key: str) -> dict[str, Any]:
    """The component's ``example[key]`` table (empty when not given), checked to be a table."""
    value = (comp.example or {}).get(key, {})
    if not isinstance(value, Mapping):
        raise AssertionError(f"{label(comp)}: example[{key!r}] must be a table, not {type(value).__name__}")
    return dict(value)


def own_overrides(comp: Component, key: str) -> dict[str, Any]:
    """Option overrides of the component itself in its example (its ``name`` may be given or not)."""
    table = example(comp, key)
    name = table.pop("name", comp.name)
    if name != comp.name:
        raise AssertionError(f"{label(comp)}: example[{key!r}] names {name!r}; the component's own table "
                             f"takes option overrides only")
    return table


def check_options(comp: Component, overrides: Mapping[str, Any] | None = None):
    """Build the options (defaults plus ``overrides``) and round-trip them through TOML."""
    what = "its default options" if not overrides else f"the options of its example {dict(overrides)}"
    try:
        options = structure(comp.options, dict(overrides or {}))
    except Exception as exc:  # noqa: BLE001
        hint = "" if overrides else " (give the component an `example` with the options it needs)"
        raise AssertionError(f"{label(comp)} cannot be built from {what}: {exc}{hint}") from exc
    as_dict = unstructure(options)
    again = structure(comp.options, tomllib.loads(tomlout.dumps({"o": as_dict}))["o"])
    assert again == options, f"{label(comp)}: options do not round-trip through TOML: {options!r} != {again!r}"
    assert comp.description, f"{label(comp)} has no one-line description"
    return options


def tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
    """``(path, tensor)`` of every tensor inside nested tuples, lists, dicts and attrs instances."""
    if isinstance(value, Tensor):
        yield prefix or "value", value
    elif isinstance(value, tuple | list):
        for i, v in enumerate(value):
            yield from tensors(v, f"{prefix}[{i}]")
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from tensors(v, f"{prefix}[{k!r}]")
    elif attrs.has(type(value)):
        for f in attrs.fields(type(value)):
            yield from tensors(getattr(value, f.name), f"{prefix}.{f.name}")


def assert_finite(where: str, values: Mapping[str, Tensor]) -> None:
    for key, t in values.items():
        if t.is_floating_point() or t.is_complex():
            assert torch.isfinite(t).all(), f"{where}: {key} has NaN or inf"


def assert_gradients(where: str, module: nn.Module, source: str = "") -> None:
    """Every trainable parameter got a finite gradient; the message lists those that did not.
    ``source`` says where the gradient comes from (" from ...")."""
    missing, bad = [], []
    for pname, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(pname)
        elif not torch.isfinite(p.grad).all():
            bad.append(pname)
    assert not missing, (f"{where}: parameter{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))} get{'' if len(missing) > 1 else 's'} no gradient{source}")
    assert not bad, f"{where}: parameter(s) {', '.join(map(repr, bad))} have a NaN or inf gradient{source}"


def squares(outputs: Mapping[str, Tensor]) -> Tensor:
    """The kit's stand-in loss: the mean square of every output, summed."""
    return sum(((v.float() ** 2).mean() for v in outputs.values() if v.is_floating_point()), torch.zeros(()))


def same_number(a: float, b: float, tol: float = 1e-5) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)

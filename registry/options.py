"""Typed options: attrs classes built from plain dicts (TOML, `--set`), with readable errors.

Every component and every config section declares its options as a frozen attrs class whose
fields carry a type annotation, a default and a one-line help (`option(...)`). `structure`
turns a mapping into an instance and rejects unknown keys, wrong types and failed validators
with an `OptionError` that names the path and lists the valid options with types and defaults.
`unstructure` is the inverse, so options round-trip through TOML.

Supported annotations: bool, int, float, str, Literal[...], X | None, tuple[X, ...],
tuple[X, Y], list[X], dict[str, X], nested attrs classes and `typing.Any` (passed through).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

import attrs

from .errors import OptionError, near_matches

_MISSING = attrs.NOTHING


def option(default: Any = _MISSING, help: str = "", validator=None, factory=None, kind: str | None = None,
           many: bool = False):
    """An attrs field with a help text (shown by `rladder describe`).

    `kind` marks a field that holds a component table (`{name = ..., <options>}`) of that
    registry kind (`many`: a table of such tables, keyed by label); the config resolver fills
    in that component's defaults.
    """
    metadata: dict[str, Any] = {"help": help}
    if kind:
        metadata["kind"] = kind
        metadata["many"] = many
    if factory is not None:
        return attrs.field(factory=factory, validator=validator, metadata=metadata)
    return attrs.field(default=default, validator=validator, metadata=metadata)


def positive(instance, attribute, value):
    """attrs validator: value > 0 (for every element of a tuple)."""
    values = value if isinstance(value, tuple | list) else (value,)
    if any(v is not None and v <= 0 for v in values):
        raise ValueError(f"'{attribute.name}' must be > 0, got {value!r}")


def odd(instance, attribute, value):
    """attrs validator: a positive odd integer (kernel sizes that keep spatial sizes with 'same' padding)."""
    if value is not None and (value <= 0 or value % 2 == 0):
        raise ValueError(f"'{attribute.name}' must be a positive odd number (a kernel that keeps sizes), got {value!r}")


def non_negative(instance, attribute, value):
    """attrs validator: value >= 0."""
    if value is not None and value < 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value!r}")


def in_open_unit(instance, attribute, value):
    """attrs validator: 0 < value < 1."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"'{attribute.name}' must lie strictly between 0 and 1, got {value!r}")


def fields_of(cls: type) -> tuple[attrs.Attribute, ...]:
    attrs.resolve_types(cls)
    return attrs.fields(cls)


def type_name(tp: Any) -> str:
    """Readable name of an annotation: `int`, `tuple[int, ...]`, `'a' | 'b'`, `float | None`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return "any"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin in (tuple, list, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if attrs.has(tp):
        return "table"
    return getattr(tp, "__name__", str(tp))


def describe(cls: type) -> list[dict[str, Any]]:
    """One dict per option: name, type, default (unstructured), help, required."""
    rows = []
    for f in fields_of(cls):
        if f.default is _MISSING:
            default, required = None, True
        elif isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            default, required = unstructure(f.default.factory()), False
        else:
            default, required = unstructure(f.default), False
        rows.append({"name": f.name, "type": type_name(f.type), "default": default,
                     "help": f.metadata.get("help", ""), "required": required})
    return rows


def options_table(cls: type, indent: str = "  ") -> str:
    """The valid options of `cls`, one per line, as used in error messages."""
    lines = []
    for row in describe(cls):
        default = "required" if row["required"] else f"default {row['default']!r}"
        help_ = f"  {row['help']}" if row["help"] else ""
        lines.append(f"{indent}{row['name']}: {row['type']} ({default}){help_}")
    return "\n".join(lines) if lines else f"{indent}(this component takes no options)"


def structure(cls: type, data: Any, path: str = "", what: str = "") -> Any:
    """Build an instance of attrs class `cls` from a mapping (or return an instance as is).

    `path` is where the mapping sits in the config (`model.levels[0].encoder`); `what` names
    the owner in messages (`encoder_cell 'conv_lstm'`).
    """
    if isinstance(data, cls):
        return data
    owner = what or (f"section '{path}'" if path else cls.__name__)
    if not isinstance(data, Mapping):
        raise OptionError(f"{_at(path)}expected a table of options for {owner}, got {type(data).__name__} "
                          f"{data!r}.\nValid options:\n{options_table(cls)}")
    fields = {f.name: f for f in fields_of(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        hint = near_matches(key, fields)
        did_you_mean = f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else ""
        raise OptionError(f"{_at(_join(path, key))}unknown option {key!r} for {owner}{did_you_mean}.\n"
                          f"Valid options:\n{options_table(cls)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(f.type, data[name], _join(path, name), owner, cls)
        elif f.default is _MISSING:
            raise OptionError(f"{_at(_join(path, name))}missing required option {name!r} for {owner}.\n"
                              f"Valid options:\n{options_table(cls)}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        bad = getattr(exc, "args", [None])
        field = _failing_field(exc, fields)
        where = _at(_join(path, field)) if field else _at(path)
        raise OptionError(f"{where}invalid value for {owner}: {bad[0] if bad else exc}.\n"
                          f"Valid options:\n{options_table(cls)}") from exc


def unstructure(value: Any) -> Any:
    """attrs instances -> dicts, tuples -> lists; everything else unchanged (TOML-ready)."""
    if attrs.has(type(value)):
        return {f.name: unstructure(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, tuple | list):
        return [unstructure(v) for v in value]
    if isinstance(value, Mapping):
        return {k: unstructure(v) for k, v in value.items()}
    return value


def _at(path: str) -> str:
    return f"{path}: " if path else ""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _failing_field(exc: Exception, fields: dict) -> str | None:
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, attrs.Attribute):
            return arg.name
    text = str(exc)
    for name in fields:
        if f"'{name}'" in text:
            return name
    return None


def _convert(tp: Any, value: Any, path: str, owner: str, cls: type) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def fail(expected: str) -> typing.NoReturn:
        raise OptionError(f"{path}: expected {expected} for {owner}, got {type(value).__name__} {value!r}.\n"
                          f"Valid options:\n{options_table(cls)}")

    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, path, owner, cls)
            except OptionError as exc:
                errors.append(exc)
        fail(type_name(tp))
    if tp is bool:
        if not isinstance(value, bool):
            fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail("a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail("a string")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            fail(type_name(tp))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_convert(args[0], v, _join(path, i), owner, cls) for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(value) != len(args):
                fail(f"{type_name(tp)} ({len(args)} items)")
            items = [_convert(a, v, _join(path, i), owner, cls) for i, (a, v) in enumerate(zip(args, value))]
        else:
            inner = args[0] if args else Any
            items = [_convert(inner, v, _join(path, i), owner, cls) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            fail("a table")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _convert(inner, v, _join(path, str(k)), owner, cls) for k, v in value.items()}
    if attrs.has(tp):
        return structure(tp, value, path)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    fail(type_name(tp))

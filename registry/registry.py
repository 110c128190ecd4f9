"""The name registry: which plugin provides which `kind/name`, and how to build it.

Plugins are modules named by entry points in group `rladder` (built-ins too: they sit in
rladder's own pyproject, so core never imports plugins). Each plugin is loaded on its own:
one that raises on import, or whose hook raises, is listed as broken and the others work.
`RLADDER_PLUGINS` (comma-separated names or globs) is an allow-list for third-party plugins;
`RLADDER_DISABLE_PLUGINS` is a block-list for any plugin. A pattern matches a plugin's entry-point
name, or its distribution name compared the PEP 503 way (case-insensitive; `-`, `_` and `.` alike;
see `pattern_match` for globs).
The launcher's `--plugins` and `--disable-plugins` set the same variables, so processes it starts see
the same plugins; patterns that match no plugin are kept in `Registry.unmatched_patterns` (the
launcher warns about them).

The registry knows no kinds of its own: whoever uses it declares them with `declare_kind(name,
description)` (rladder.core declares the built-in ones in core/kinds.py). A plugin that provides a
component of an undeclared kind is listed as broken.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata
import os
import re
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, DuplicateComponentError, OptionError, UnknownComponentError, near_matches
from .options import describe, structure, unstructure

GROUP = hookspecs.PROJECT
BUILTIN_DIST = "rladder"
ALLOW_ENV, BLOCK_ENV = "RLADDER_PLUGINS", "RLADDER_DISABLE_PLUGINS"
OPTION_OF_ENV = {ALLOW_ENV: "--plugins", BLOCK_ENV: "--disable-plugins"}

_KINDS: dict[str, str] = {}
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]*")


def declare_kind(name: str, description: str) -> None:
    """Declare a component kind (`name -> one-line description`) that plugins may provide.

    Declaring a kind again with the same description does nothing; with another one it is an error.
    """
    if not isinstance(name, str) or not _KIND_NAME.fullmatch(name):
        raise ValueError(f"a kind name is lower case letters, digits and '_', starting with a letter; got {name!r}")
    if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
        raise ValueError(f"kind {name!r} needs a one-line description, got {description!r}")
    description = description.strip()
    if _KINDS.get(name, description) != description:
        raise ValueError(f"kind {name!r} is already declared as {_KINDS[name]!r}; not redeclared as {description!r}")
    _KINDS[name] = description


def declared_kinds() -> dict[str, str]:
    """The declared kinds, `name -> description`, in the order they were declared."""
    return dict(_KINDS)


def _undeclared_kind_message(kind: str) -> str:
    hint = near_matches(kind, _KINDS)
    mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    known = ", ".join(_KINDS) or "none (rladder.core declares the built-in kinds when it is imported)"
    return f"kind {kind!r} is not declared; declared kinds: {known}{mean}"


@attrs.frozen
class NoOptions:
    """A component without options."""


@attrs.frozen
class Component:
    """One registered component: `kind/name`, how to build it, and who provides it.

    `factory(options, **context)` builds it from an instance of the attrs class `options`;
    the context depends on the kind (shapes for cells, the DataSpec for tasks and models).

    `example` (optional, keyword) is a small run the conformance kit (`rladder.core.testing`) checks
    the component in, as a run config fragment: `data` (a dataset table), `model` (a model table),
    `task` (a task table). The component's own table holds only option overrides (its `name` is
    implied), e.g. a dataset `{"data": {"train": 64, "val": 16, "test": 16}}` (small splits), a model
    `{"data": {"name": "synthetic", "static": True}}` (data it accepts), a task `{"data": {...},
    "model": {"name": "ladder", ...}}` (a run that provides its needs); a cell's option overrides go
    under its kind (`{"encoder_cell": {"units": 8}}`). Nothing else reads it.
    """

    kind: str = attrs.field(validator=[attrs.validators.instance_of(str), attrs.validators.min_len(1)])
    name: str
    factory: Callable[..., Any]
    options: type = NoOptions
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""
    example: Mapping[str, Any] = attrs.field(factory=dict, hash=False, kw_only=True,
                                             validator=attrs.validators.instance_of(Mapping))

    @property
    def provider(self) -> str:
        dist = f" ({self.distribution} {self.version})" if self.distribution else ""
        return f"{self.plugin}{dist}"

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "description": self.description,
                "plugin": self.plugin, "distribution": self.distribution, "version": self.version,
                "options": describe(self.options)}


@attrs.define
class PluginInfo:
    """A plugin as the registry saw it: status is ok, broken, blocked or not-allowed.

    `reason` says which allow/block pattern decided a blocked or not-allowed status; `conflicts`
    maps each `kind/name` it provides that another plugin provides too to those other plugins.
    """

    name: str
    module: str = ""
    distribution: str = ""
    version: str = ""
    status: str = "ok"
    error: str = ""
    components: list[str] = attrs.field(factory=list)
    reason: str = ""
    conflicts: dict[str, list[str]] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _patterns(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def normalize_distribution(name: str) -> str:
    """PEP 503 form of a distribution name: lower case, runs of `-`, `_` and `.` as one `-`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pattern_match(pattern: str, plugin: str, distribution: str = "") -> str:
    """What `pattern` (a name or glob) matches: "entry-point name", "distribution", or "" (nothing).

    Entry-point names match as they are (fnmatch, case-sensitive). Distribution names are compared in
    their PEP 503 form: a plain name in that form too; a glob case-insensitively with `_` as `-`, and a
    `.` in it literal, so that `rladder.*` (the built-ins' entry points) does not select every
    distribution named `rladder-*`.
    """
    if fnmatch.fnmatchcase(plugin, pattern):
        return "entry-point name"
    if distribution:
        glob = any(ch in pattern for ch in "*?[")
        wanted = re.sub(r"[-_]+", "-", pattern).lower() if glob else normalize_distribution(pattern)
        if fnmatch.fnmatchcase(normalize_distribution(distribution), wanted):
            return "distribution"
    return ""


class Registry:
    """Components by kind and name, loaded from entry points in group `rladder`."""

    def __init__(self, entry_points: bool | Iterable[importlib.metadata.EntryPoint] = True,
                 allow: str | None = None, block: str | None = None):
        """`entry_points`: True loads the installed plugins (group `rladder`), False none, or give the
        entry points to load. `allow` and `block` default to $RLADDER_PLUGINS and $RLADDER_DISABLE_PLUGINS."""
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[tuple[str, str], Component] = {}
        self._conflicts: dict[tuple[str, str], list[Component]] = {}
        self._allow = _patterns(os.environ.get(ALLOW_ENV) if allow is None else allow)
        self._block = _patterns(os.environ.get(BLOCK_ENV) if block is None else block)
        self._seen: list[tuple[str, str]] = []      # (entry-point name, distribution) of every entry point
        if entry_points is True:
            entry_points = importlib.metadata.entry_points(group=GROUP)
        loaded = [self._load_entry_point(ep) for ep in sorted(entry_points or (), key=lambda e: e.name)]
        # Kinds are checked once every plugin is imported: a plugin may declare kinds on import (rladder.core,
        # which the built-in plugins import, declares the built-in ones) and another may load before it.
        for info, components in filter(None, loaded):
            self._index(info, components)

    # ---------------------------------------------------------------- loading
    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> tuple[PluginInfo, list[Component]] | None:
        dist = ep.dist.name if ep.dist else ""
        info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else "")
        self._seen.append((ep.name, dist))
        if ep.name in self.plugins:
            # pluggy would silently skip it; say so instead.
            other = self.plugins[ep.name]
            info.status, info.error = "broken", (f"plugin name {ep.name!r} is also used by "
                                                 f"{other.distribution or other.module}; rename one entry point")
            self.plugins[f"{ep.name} [{dist}]"] = info
            return None
        info.status, info.reason = self._admission(ep.name, dist)
        if info.status != "ok":
            self.plugins[ep.name] = info
            return None
        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the others
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.status, info.error = "broken", _one_line(exc)
            self.plugins[ep.name] = info
            return None
        components = self._register(module, info)
        return None if components is None else (info, components)

    def _admission(self, name: str, dist: str) -> tuple[str, str]:
        """Status ("ok", "blocked" or "not-allowed") of a plugin under the allow and block lists, and why."""
        for pattern in self._block:
            if what := pattern_match(pattern, name, dist):
                return "blocked", f"{OPTION_OF_ENV[BLOCK_ENV]} ({BLOCK_ENV}) pattern {pattern!r} matches its {what}" + (
                    f" {dist}" if what == "distribution" else "")
        if self._allow and dist != BUILTIN_DIST and not any(pattern_match(p, name, dist) for p in self._allow):
            return "not-allowed", (f"neither its name nor its distribution matches {OPTION_OF_ENV[ALLOW_ENV]} "
                                   f"({ALLOW_ENV}) {','.join(self._allow)}")
        return "ok", ""

    @property
    def unmatched_patterns(self) -> list[tuple[str, str]]:
        """`(environment variable, pattern)` of every allow/block pattern that matched no plugin."""
        return [(env, pattern) for env, patterns in ((ALLOW_ENV, self._allow), (BLOCK_ENV, self._block))
                for pattern in patterns if not any(pattern_match(pattern, n, d) for n, d in self._seen)]

    def unmatched_warnings(self) -> list[tuple[str, str]]:
        """`(key, message)` for each pattern in `unmatched_patterns` (the launcher prints them, once per key)."""
        names = sorted({n for n, _ in self._seen})
        dists = sorted({d for _, d in self._seen if d})
        out = []
        for env, pattern in self.unmatched_patterns:
            hint = difflib.get_close_matches(pattern, sorted(set(names + dists)), n=2, cutoff=0.8)
            mean = f" (did you mean {' or '.join(repr(h) for h in hint)}?)" if hint else ""
            message = (f"{OPTION_OF_ENV[env]} ({env}) pattern {pattern!r} matches no plugin{mean}. A pattern "
                       f"matches an entry-point name or a distribution name. Plugins: {', '.join(names) or '(none)'}. "
                       f"Distributions: {', '.join(dists) or '(none)'}.")
            out.append((f"{env}={pattern}", message))
        return out

    def add_plugin(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> PluginInfo:
        """Register a plugin object or module directly (tests, notebooks, one-off local plugins)."""
        info = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__name__), distribution, version)
        if name in self.plugins:
            raise ConfigError(f"a plugin named {name!r} is already registered; choose another name")
        components = self._register(plugin, info)
        if components is not None:
            self._index(info, components)
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> list[Component] | None:
        """Register with pluggy and call the hook: the plugin's components, or None if it is broken."""
        self.plugins[info.name] = info
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001
            info.status, info.error = "broken", _one_line(exc)
            return None
        try:
            self.pm.check_pending()
            impls = [i for i in self.pm.hook.rladder_components.get_hookimpls() if i.plugin_name == info.name]
            comps = []
            for impl in impls:
                for comp in impl.function() or ():
                    if not isinstance(comp, Component):
                        raise TypeError(f"rladder_components returned {type(comp).__name__}, not a Component")
                    comps.append(attrs.evolve(comp, plugin=info.name, distribution=info.distribution,
                                              version=info.version))
        except Exception as exc:  # noqa: BLE001
            self.pm.unregister(name=info.name)
            info.status, info.error = "broken", _one_line(exc)
            return None
        return comps

    def _index(self, info: PluginInfo, comps: list[Component]) -> None:
        """Make a plugin's components available by `kind/name` (or list it as broken: a kind nobody declared)."""
        for comp in comps:
            if comp.kind not in _KINDS:
                self.pm.unregister(name=info.name)
                info.status, info.error = "broken", f"{comp.kind}/{comp.name}: {_undeclared_kind_message(comp.kind)}"
                return
        for comp in comps:
            key = (comp.kind, comp.name)
            info.components.append(f"{comp.kind}/{comp.name}")
            if key in self._items:
                providers = self._conflicts.setdefault(key, [self._items[key]])
                providers.append(comp)
                for c in providers:
                    self.plugins[c.plugin].conflicts[f"{comp.kind}/{comp.name}"] = [
                        o.plugin for o in providers if o is not c]
            else:
                self._items[key] = comp

    # ---------------------------------------------------------------- lookup
    def components(self, kind: str | None = None) -> list[Component]:
        if kind is not None:
            self._check_kind(kind)
        return sorted((c for c in self._items.values() if kind in (None, c.kind)), key=lambda c: (c.kind, c.name))

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.components(kind)]

    @property
    def conflicts(self) -> dict[tuple[str, str], list[Component]]:
        """`(kind, name) -> every component of that name`, for names more than one plugin provides."""
        return dict(self._conflicts)

    def providers(self, kind: str, name: str) -> list[Component]:
        """Every component `kind/name` (more than one: a conflict, and `get` refuses it)."""
        key = (kind, name)
        return list(self._conflicts.get(key) or ([self._items[key]] if key in self._items else []))

    def conflict_note(self, kind: str, name: str) -> str:
        """Who provides a clashing `kind/name` and how to keep one: 'provided by A and B; block one ...'."""
        comps = self._conflicts[(kind, name)]
        plugins = [c.plugin for c in comps]
        which = ", ".join(plugins[:-1]) + " or " + plugins[-1]
        return (f"provided by {' and '.join(c.provider for c in comps)}; block "
                f"{'one' if len(comps) == 2 else 'all but one'} with --disable-plugins NAME ({which})")

    def get(self, kind: str, name: str) -> Component:
        self._check_kind(kind)
        key = (kind, name)
        if key in self._conflicts:
            raise DuplicateComponentError(
                f"{kind} {name!r} is provided by more than one plugin: {self.conflict_note(kind, name)} "
                f"(or {BLOCK_ENV}), or uninstall one of them.")
        if key not in self._items:
            raise UnknownComponentError(self._unknown_message(kind, name))
        return self._items[key]

    def _check_kind(self, kind: str) -> None:
        if kind not in _KINDS:
            hint = near_matches(kind, _KINDS)
            mean = f" Did you mean {hint[0]!r}?" if hint else ""
            known = ", ".join(_KINDS) or "(none declared)"
            raise ConfigError(f"unknown component kind {kind!r}.{mean} Kinds: {known}.")

    def _unknown_message(self, kind: str, name: str) -> str:
        comps = {c.name: c for c in self.components(kind)}
        hint = near_matches(name, comps)
        parts = [f"unknown {kind} {name!r}."]
        if hint:
            parts.append("Did you mean " + ", ".join(f"{h!r} (from {comps[h].provider})" for h in hint) + "?")
        others = [f"{c.kind} (from {c.provider})" for (k, n), c in self._items.items() if n == name and k != kind]
        if others:
            parts.append(f"A component named {name!r} exists as " + ", ".join(others) + ".")
        parts.append(f"Available {kind} names: {', '.join(comps) or '(none)'}.")
        broken = [p.name for p in self.plugins.values() if p.status != "ok"]
        if broken:
            parts.append(f"Plugins not loaded (see `rladder plugins`): {', '.join(broken)}.")
        else:
            parts.append("If it comes from a plugin, install that plugin (see `rladder plugins`).")
        return " ".join(parts)

    # ---------------------------------------------------------------- building
    def resolve(self, kind: str, table: Mapping[str, Any] | str, path: str = "") -> tuple[Component, Any]:
        """Component and its options instance from a table `{name = ..., <options>}` (or a bare name)."""
        if isinstance(table, str):
            table = {"name": table}
        if not isinstance(table, Mapping):
            raise OptionError(f"{path or kind}: expected a table with a 'name' key naming a {kind}, "
                              f"got {type(table).__name__} {table!r}")
        if "name" not in table or not isinstance(table["name"], str):
            raise OptionError(f"{path or kind}: missing 'name' (a string naming a {kind}; "
                              f"see `rladder list {kind}`)")
        try:
            comp = self.get(kind, table["name"])
        except ConfigError as exc:
            raise type(exc)(f"{path + '.name: ' if path else ''}{exc}") from None
        opts = {k: v for k, v in table.items() if k != "name"}
        options = structure(comp.options, opts, path=path, what=f"{kind} {comp.name!r}")
        return comp, options

    def resolved_table(self, kind: str, table: Mapping[str, Any] | str, path: str = "") -> dict[str, Any]:
        """The table with every default filled in (what `--print-config` shows)."""
        comp, options = self.resolve(kind, table, path)
        return {"name": comp.name, **unstructure(options)}

    def build(self, kind: str, table: Mapping[str, Any] | str, path: str = "", **context: Any) -> Any:
        comp, options = self.resolve(kind, table, path)
        return comp.factory(options, **context)


def _one_line(exc: BaseException) -> str:
    where = traceback.extract_tb(exc.__traceback__)
    loc = f" (at {where[-1].filename}:{where[-1].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{loc}"


_REGISTRY: Registry | None = None
_ON_LOAD: list[Callable[[Registry], None]] = []


def on_registry_loaded(callback: Callable[[Registry], None]) -> Callable[[Registry], None]:
    """Call `callback(registry)` each time `get_registry` loads the process-wide registry (the launcher
    warns about allow/block patterns that matched nothing this way). Adding the same callback again does
    nothing."""
    if callback not in _ON_LOAD:
        _ON_LOAD.append(callback)
    return callback


def get_registry() -> Registry:
    """The process-wide registry (the global mutable state, with the declared kinds), loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
        for callback in list(_ON_LOAD):
            callback(_REGISTRY)
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> Registry | None:
    """Replace the process-wide registry (tests); `None` reloads it on next use. Returns the old one."""
    global _REGISTRY
    old, _REGISTRY = _REGISTRY, registry
    return old


def plugin_versions(registry: Registry | None = None) -> dict[str, str]:
    """`plugin name -> distribution version` of every loaded plugin (saved with runs)."""
    reg = registry or get_registry()
    return {p.name: f"{p.distribution} {p.version}".strip() for p in reg.plugins.values() if p.status == "ok"}



"""The name registry: which plugin provides which `kind/name`, and how to build it.

Plugins are modules named by entry points in group `rladder` (built-ins too: they sit in
rladder's own pyproject, so core never imports plugins). Each plugin is loaded on its own:
one that raises on import, or whose hook raises, is listed as broken and the others work.
`RLADDER_PLUGINS` (comma-separated names or globs) is an allow-list for third-party plugins;
`RLADDER_DISABLE_PLUGINS` is a block-list for any plugin. The launcher's `--plugins` and
`--disable-plugins` set the same variables, so processes it starts see the same plugins.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import os
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, DuplicateComponentError, OptionError, UnknownComponentError, near_matches
from .options import describe, structure, unstructure

KINDS = ("encoder_cell", "decoder_cell", "task", "dataset", "model", "loader", "recipe")
GROUP = hookspecs.PROJECT
BUILTIN_DIST = "rladder"
ALLOW_ENV, BLOCK_ENV = "RLADDER_PLUGINS", "RLADDER_DISABLE_PLUGINS"


@attrs.frozen
class NoOptions:
    """A component without options."""


@attrs.frozen
class Component:
    """One registered component: `kind/name`, how to build it, and who provides it.

    `factory(options, **context)` builds it from an instance of the attrs class `options`;
    the context depends on the kind (shapes for cells, the DataSpec for tasks and models).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    name: str
    factory: Callable[..., Any]
    options: type = NoOptions
    description: str = ""
    plugin: str = ""
    distribution: str = ""
    version: str = ""

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
    """A plugin as the registry saw it: status is ok, broken, blocked or not-allowed."""

    name: str
    module: str = ""
    distribution: str = ""
    version: str = ""
    status: str = "ok"
    error: str = ""
    components: list[str] = attrs.field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _patterns(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


class Registry:
    """Components by kind and name, loaded from entry points in group `rladder`."""

    def __init__(self, entry_points: bool = True, allow: str | None = None, block: str | None = None):
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._items: dict[tuple[str, str], Component] = {}
        self._conflicts: dict[tuple[str, str], list[Component]] = {}
        self._allow = _patterns(os.environ.get(ALLOW_ENV) if allow is None else allow)
        self._block = _patterns(os.environ.get(BLOCK_ENV) if block is None else block)
        if entry_points:
            for ep in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: e.name):
                self._load_entry_point(ep)

    # ---------------------------------------------------------------- loading
    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist else ""
        info = PluginInfo(ep.name, ep.value, dist, ep.dist.version if ep.dist else "")
        if ep.name in self.plugins:
            # pluggy would silently skip it; say so instead.
            other = self.plugins[ep.name]
            info.status, info.error = "broken", (f"plugin name {ep.name!r} is also used by "
                                                 f"{other.distribution or other.module}; rename one entry point")
            self.plugins[f"{ep.name} [{dist}]"] = info
            return
        if any(fnmatch.fnmatch(ep.name, p) for p in self._block):
            info.status = "blocked"
        elif self._allow and dist != BUILTIN_DIST and not any(fnmatch.fnmatch(ep.name, p) for p in self._allow):
            info.status = "not-allowed"
        if info.status != "ok":
            self.plugins[ep.name] = info
            return
        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a broken plugin must not stop the others
            if isinstance(exc, KeyboardInterrupt):
                raise
            info.status, info.error = "broken", _one_line(exc)
            self.plugins[ep.name] = info
            return
        self._register(module, info)

    def add_plugin(self, plugin: Any, name: str, distribution: str = "", version: str = "") -> PluginInfo:
        """Register a plugin object or module directly (tests, notebooks, one-off local plugins)."""
        info = PluginInfo(name, getattr(plugin, "__name__", type(plugin).__name__), distribution, version)
        if name in self.plugins:
            raise ConfigError(f"a plugin named {name!r} is already registered; choose another name")
        self._register(plugin, info)
        return info

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        self.plugins[info.name] = info
        try:
            self.pm.register(plugin, name=info.name)
        except Exception as exc:  # noqa: BLE001
            info.status, info.error = "broken", _one_line(exc)
            return
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
            return
        for comp in comps:
            key = (comp.kind, comp.name)
            info.components.append(f"{comp.kind}/{comp.name}")
            if key in self._items:
                self._conflicts.setdefault(key, [self._items[key]]).append(comp)
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
        return dict(self._conflicts)

    def get(self, kind: str, name: str) -> Component:
        self._check_kind(kind)
        key = (kind, name)
        if key in self._conflicts:
            providers = " and ".join(c.provider for c in self._conflicts[key])
            raise DuplicateComponentError(
                f"{kind} {name!r} is provided by more than one plugin: {providers}. "
                f"Uninstall one of them, or block one with --disable-plugins NAME (or {BLOCK_ENV}).")
        if key not in self._items:
            raise UnknownComponentError(self._unknown_message(kind, name))
        return self._items[key]

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            hint = near_matches(kind, KINDS)
            mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"unknown component kind {kind!r}.{mean} Kinds: {', '.join(KINDS)}.")

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


def get_registry() -> Registry:
    """The process-wide registry (the only global mutable state), loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
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



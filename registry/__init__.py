"""rladder.registry: the pluggy registry of components (knows nothing about models).

Plugin authors use from here: ``hookimpl``, ``Component``, ``option`` (typed options with help) and
its validators ``positive``, ``non_negative``, ``odd``, ``in_open_unit``, ``structure``, and the
errors (``ConfigError``, ``ContractError``, ``DataError``).
"""

from .errors import (ConfigError, ContractError, DataError, DuplicateComponentError, OptionError, RladderError,
                     UnknownComponentError, near_matches)
from .hookspecs import PROJECT, hookimpl, hookspec
from .options import describe, in_open_unit, non_negative, odd, option, options_table, positive, structure, unstructure
from .registry import (ALLOW_ENV, BLOCK_ENV, Component, NoOptions, PluginInfo, Registry, declare_kind, declared_kinds,
                       get_registry, normalize_distribution, on_registry_loaded, plugin_versions, reset_registry)

__all__ = [
    "ALLOW_ENV", "BLOCK_ENV", "PROJECT", "Component", "ConfigError", "ContractError", "DataError",
    "DuplicateComponentError", "NoOptions", "OptionError", "PluginInfo", "Registry", "RladderError",
    "UnknownComponentError", "declare_kind", "declared_kinds", "describe", "get_registry", "hookimpl", "hookspec",
    "in_open_unit", "non_negative", "odd", "positive",
    "near_matches", "normalize_distribution", "on_registry_loaded", "option", "options_table", "plugin_versions",
    "reset_registry", "structure", "unstructure",
]

"""rladder.registry: the pluggy registry of components (knows nothing about models)."""

from .errors import (ConfigError, ContractError, DataError, DuplicateComponentError, OptionError, RladderError,
                     UnknownComponentError, near_matches)
from .hookspecs import PROJECT, hookimpl, hookspec
from .options import describe, option, options_table, structure, unstructure
from .registry import (ALLOW_ENV, BLOCK_ENV, KINDS, Component, NoOptions, PluginInfo, Registry, get_registry,
                       plugin_versions, reset_registry)

__all__ = [
    "ALLOW_ENV", "BLOCK_ENV", "KINDS", "PROJECT", "Component", "ConfigError", "ContractError", "DataError",
    "DuplicateComponentError", "NoOptions", "OptionError", "PluginInfo", "Registry", "RladderError",
    "UnknownComponentError", "describe", "get_registry", "hookimpl", "hookspec", "near_matches", "option",
    "options_table", "plugin_versions", "reset_registry", "structure", "unstructure",
]

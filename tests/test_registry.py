"""The registry: entry-point plugins, provenance, and the errors for names and options."""

from __future__ import annotations

import types

import attrs
import pytest

from rladder.registry import (KINDS, Component, ConfigError, DuplicateComponentError, OptionError, Registry,
                              UnknownComponentError, hookimpl, option)

BUILTIN_PLUGINS = {"rladder.feedforward", "rladder.recurrent", "rladder.convrecurrent", "rladder.decoders",
                   "rladder.ladder_model", "rladder.synthetic", "rladder.memory_loader"}


@attrs.frozen
class ToyOptions:
    size: int = option(3, help="A size.")


def toy_plugin(*components):
    class Plugin:
        @hookimpl
        def rladder_components(self):
            return list(components)
    return Plugin()


def comp(kind="encoder_cell", name="toy", factory=lambda o, **kw: ("built", o, kw)):
    return Component(kind, name, factory, ToyOptions, "A toy.")


def test_builtins_arrive_through_entry_points_with_provenance():
    reg = Registry()
    assert BUILTIN_PLUGINS <= set(reg.plugins)
    for name in BUILTIN_PLUGINS:
        info = reg.plugins[name]
        assert info.status == "ok" and info.distribution == "rladder" and info.version, info
    cell = reg.get("encoder_cell", "conv_lstm")
    assert cell.plugin == "rladder.convrecurrent" and cell.provider.startswith("rladder.convrecurrent (rladder ")
    assert {"encoder_cell", "decoder_cell", "model", "dataset", "loader"} <= {c.kind for c in reg.components()}
    assert set(KINDS) >= {"encoder_cell", "decoder_cell", "task", "dataset", "model", "loader"}


def test_unknown_name_lists_near_matches_and_their_providers():
    reg = Registry()
    with pytest.raises(UnknownComponentError) as err:
        reg.get("encoder_cell", "conv_lstn")
    msg = str(err.value)
    assert "unknown encoder_cell 'conv_lstn'" in msg
    assert "'conv_lstm' (from rladder.convrecurrent (rladder" in msg
    assert "Available encoder_cell names:" in msg and "gru" in msg


def test_name_of_another_kind_is_pointed_out():
    reg = Registry()
    with pytest.raises(UnknownComponentError, match="exists as encoder_cell"):
        reg.get("decoder_cell", "conv_lstm")


def test_unknown_kind():
    with pytest.raises(ConfigError, match="unknown component kind 'encoder'. Did you mean 'encoder_cell'"):
        Registry(entry_points=False).get("encoder", "x")


def test_unknown_or_ill_typed_option_lists_valid_options():
    reg = Registry()
    with pytest.raises(OptionError) as err:
        reg.build("encoder_cell", {"name": "conv_lstm", "channel": 8}, path="model.levels[0].encoder",
                  in_shape=(1, 8, 8), top_down=True)
    msg = str(err.value)
    assert "model.levels[0].encoder.channel: unknown option 'channel' for encoder_cell 'conv_lstm'" in msg
    assert "did you mean 'channels'" in msg and "kernel_size: int (default 3)" in msg
    with pytest.raises(OptionError, match=r"channels: expected an integer .* got str '8'"):
        reg.build("encoder_cell", {"name": "conv_lstm", "channels": "8"}, path="x", in_shape=(1, 8, 8), top_down=True)


def test_duplicate_names_name_both_providers():
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(comp()), "first-plugin", "first-dist", "1.0")
    reg.add_plugin(toy_plugin(comp()), "second-plugin", "second-dist", "2.0")
    with pytest.raises(DuplicateComponentError) as err:
        reg.get("encoder_cell", "toy")
    assert "first-plugin (first-dist 1.0) and second-plugin (second-dist 2.0)" in str(err.value)
    assert ("encoder_cell", "toy") in reg.conflicts


def test_build_passes_options_and_context():
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(comp()), "p")
    built, options, context = reg.build("encoder_cell", {"name": "toy", "size": 5}, in_shape=(2,))
    assert built == "built" and options == ToyOptions(5) and context == {"in_shape": (2,)}
    assert reg.resolved_table("encoder_cell", "toy") == {"name": "toy", "size": 3}


def test_broken_plugins_are_listed_and_the_rest_works():
    reg = Registry(entry_points=False)

    class Raising:
        @hookimpl
        def rladder_components(self):
            raise RuntimeError("boom")

    class Misspelt:
        @hookimpl
        def rladder_component(self):  # typo in the hook name
            return []

    class BadKind:
        @hookimpl
        def rladder_components(self):
            return ["not a component"]

    reg.add_plugin(Raising(), "raising")
    reg.add_plugin(Misspelt(), "misspelt")
    reg.add_plugin(BadKind(), "badkind")
    reg.add_plugin(toy_plugin(comp()), "good")
    assert reg.plugins["raising"].status == "broken" and "RuntimeError: boom" in reg.plugins["raising"].error
    assert reg.plugins["misspelt"].status == "broken" and "rladder_component" in reg.plugins["misspelt"].error
    assert reg.plugins["badkind"].status == "broken" and "not a Component" in reg.plugins["badkind"].error
    assert reg.plugins["good"].status == "ok" and reg.get("encoder_cell", "toy").plugin == "good"
    with pytest.raises(UnknownComponentError, match="Plugins not loaded .*raising"):
        reg.get("encoder_cell", "missing")


def test_component_validates_its_kind():
    with pytest.raises(ValueError):
        Component("cell", "x", lambda o: o)


def test_block_list_and_allow_list(monkeypatch):
    reg = Registry(block="rladder.decoders")
    assert reg.plugins["rladder.decoders"].status == "blocked"
    assert reg.names("decoder_cell") == []
    assert reg.get("encoder_cell", "conv").plugin == "rladder.feedforward"
    # the allow-list restricts third-party plugins only; built-ins stay
    reg = Registry(allow="some-other-plugin")
    assert reg.plugins["rladder.decoders"].status == "ok"
    # globs, and the environment variables the launcher sets
    monkeypatch.setenv("RLADDER_DISABLE_PLUGINS", "rladder.*recurrent")
    reg = Registry()
    assert reg.plugins["rladder.recurrent"].status == "blocked"
    assert reg.plugins["rladder.convrecurrent"].status == "blocked"
    assert reg.plugins["rladder.feedforward"].status == "ok"


def test_a_module_can_be_a_plugin():
    module = types.ModuleType("my_local_plugin")
    module.rladder_components = hookimpl(lambda: [comp("dataset", "local")])
    reg = Registry(entry_points=False)
    reg.add_plugin(module, "local")
    assert reg.get("dataset", "local").provider == "local"

"""The registry: entry-point plugins, provenance, and the errors for names and options."""

from __future__ import annotations

import importlib.metadata
import types

import attrs
import pytest

import rladder.core  # noqa: F401 - declares the component kinds (the registry knows none of its own)
from rladder.registry import (ALLOW_ENV, BLOCK_ENV, Component, ConfigError, DuplicateComponentError, OptionError,
                              Registry, UnknownComponentError, declare_kind, declared_kinds, hookimpl, option)
from rladder.registry import registry as registry_module

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
    assert set(declared_kinds()) >= {"encoder_cell", "decoder_cell", "task", "dataset", "model", "loader"}


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


def test_core_declares_the_kinds_and_a_plugin_of_an_undeclared_kind_is_broken():
    assert list(declared_kinds()) == ["encoder_cell", "decoder_cell", "task", "dataset", "model", "loader", "recipe"]
    assert all(text and "\n" not in text for text in declared_kinds().values())
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(comp(), comp("cell", "x")), "uses-cell")
    reg.add_plugin(toy_plugin(comp("dataset", "fine")), "fine")
    info = reg.plugins["uses-cell"]
    assert info.status == "broken" and info.components == []
    assert "cell/x: kind 'cell' is not declared; declared kinds: encoder_cell, decoder_cell, task" in info.error
    assert reg.names("encoder_cell") == [] and reg.names("dataset") == ["fine"]
    with pytest.raises((TypeError, ValueError)):
        Component("", "x", lambda o: o)


def test_kinds_declared_by_their_users_and_plugins(monkeypatch, tmp_path):
    monkeypatch.setattr(registry_module, "_KINDS", declared_kinds())      # undone after the test
    declare_kind("widget", "a made-up kind")
    declare_kind("widget", "a made-up kind")                              # the same again: fine
    with pytest.raises(ValueError, match="already declared"):
        declare_kind("widget", "something else")
    with pytest.raises(ValueError, match="one-line description"):
        declare_kind("gadget", "")
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(comp("widget", "gizmo")), "widgets")
    assert reg.get("widget", "gizmo").plugin == "widgets" and reg.names("widget") == ["gizmo"]
    with pytest.raises(ConfigError, match="unknown component kind 'widgit'. Did you mean 'widget'.*, recipe, widget"):
        reg.get("widgit", "gizmo")
    # a plugin may declare a kind when it is imported; entry points are checked after all are imported,
    # so a plugin of that kind that sorts (and loads) first still works
    eps = installed(tmp_path, monkeypatch, ("a-uses", "rladder-a", "uses_kind",
                                            "import rladder_test_helper as h\n"
                                            "rladder_components = h.components(('doohickey', 'thing'))"),
                    ("b-declares", "rladder-b", "declares_kind",
                     "from rladder.registry import declare_kind\n"
                     "declare_kind('doohickey', 'declared by a plugin')\n"))
    reg = Registry(entry_points=eps)
    assert reg.plugins["a-uses"].status == "ok" and reg.get("doohickey", "thing").plugin == "a-uses"


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


def test_a_conflict_marks_every_provider():
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(comp(), comp("dataset", "own")), "first-plugin", "first-dist", "1.0")
    reg.add_plugin(toy_plugin(comp()), "second-plugin", "second-dist", "2.0")
    reg.add_plugin(toy_plugin(comp("dataset", "other")), "bystander")
    first, second = reg.plugins["first-plugin"], reg.plugins["second-plugin"]
    assert first.status == second.status == "ok"                     # still loaded; `get` refuses the name
    assert first.conflicts == {"encoder_cell/toy": ["second-plugin"]}
    assert second.conflicts == {"encoder_cell/toy": ["first-plugin"]}
    assert reg.plugins["bystander"].conflicts == {}
    assert [c.plugin for c in reg.providers("encoder_cell", "toy")] == ["first-plugin", "second-plugin"]
    assert [c.plugin for c in reg.providers("dataset", "own")] == ["first-plugin"]
    assert reg.conflict_note("encoder_cell", "toy") == (
        "provided by first-plugin (first-dist 1.0) and second-plugin (second-dist 2.0); "
        "block one with --disable-plugins NAME (first-plugin or second-plugin)")
    assert first.to_dict()["conflicts"] == {"encoder_cell/toy": ["second-plugin"]}


HELPER = """
from rladder.registry import Component, NoOptions, hookimpl

def components(*pairs):
    return hookimpl(lambda: [Component(kind, name, lambda o: o, NoOptions, "t") for kind, name in pairs])
"""


def installed(tmp_path, monkeypatch, *plugins):
    """Entry points of distributions installed in tmp_path: (entry-point name, distribution, module, source)."""
    (tmp_path / "rladder_test_helper.py").write_text(HELPER)
    for name, dist, module, source in plugins:
        (tmp_path / f"{module}.py").write_text(source)
        info = tmp_path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[rladder]\n{name} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return [ep for d in importlib.metadata.distributions(path=[str(tmp_path)]) for ep in d.entry_points]


@pytest.fixture
def two_dists(tmp_path, monkeypatch):
    return installed(tmp_path, monkeypatch,
                     ("mycells", "rladder-mycells", "mycells_plugin",
                      "import rladder_test_helper as h\nrladder_components = h.components(('encoder_cell', 'myc'))"),
                     ("other", "Other.Dist", "other_plugin",
                      "import rladder_test_helper as h\nrladder_components = h.components(('dataset', 'od'))"))


def test_allow_and_block_patterns_match_distribution_names(two_dists):
    # the pip name, spelled any PEP 503 way, selects the plugin whose entry point has another name
    for pattern in ("rladder-mycells", "RLADDER_MyCells", "rladder.mycells", "Rladder_my*"):
        reg = Registry(entry_points=two_dists, allow=pattern, block="")
        status = {n: p.status for n, p in reg.plugins.items()}
        assert status == {"mycells": "ok", "other": "not-allowed"}, pattern
        assert "neither its name nor its distribution matches --plugins" in reg.plugins["other"].reason
        assert reg.unmatched_patterns == []
    reg = Registry(entry_points=two_dists, allow="", block="other-dist")
    assert reg.plugins["other"].status == "blocked" and reg.plugins["mycells"].status == "ok"
    assert reg.plugins["other"].reason == ("--disable-plugins (RLADDER_DISABLE_PLUGINS) pattern 'other-dist' "
                                           "matches its distribution Other.Dist")
    assert reg.names("dataset") == [] and reg.names("encoder_cell") == ["myc"]
    reg = Registry(entry_points=two_dists, allow="", block="my*")           # entry-point names as before
    assert reg.plugins["mycells"].status == "blocked" and "matches its entry-point name" in reg.plugins["mycells"].reason
    # a '.' in a glob is literal: `rladder.*` means the built-ins' entry points, not every rladder-* distribution
    reg = Registry(entry_points=two_dists, allow="", block="rladder.*")
    assert reg.plugins["mycells"].status == "ok" and reg.unmatched_patterns == [(BLOCK_ENV, "rladder.*")]


def test_patterns_that_match_no_plugin_are_recorded_with_the_known_names(two_dists):
    reg = Registry(entry_points=two_dists, allow="mycells,rladder-mycell", block="othre,rladder-*")
    assert reg.unmatched_patterns == [(ALLOW_ENV, "rladder-mycell"), (BLOCK_ENV, "othre")]
    (key, allow_msg), (_, block_msg) = reg.unmatched_warnings()
    assert key == "RLADDER_PLUGINS=rladder-mycell"
    assert allow_msg.startswith("--plugins (RLADDER_PLUGINS) pattern 'rladder-mycell' matches no plugin "
                                "(did you mean 'rladder-mycells'?).")
    assert "Plugins: mycells, other. Distributions: Other.Dist, rladder-mycells." in allow_msg
    assert block_msg.startswith("--disable-plugins (RLADDER_DISABLE_PLUGINS) pattern 'othre' matches no plugin")


def test_builtins_ignore_the_allow_list_but_can_be_blocked_by_distribution():
    reg = Registry(allow="rladder-mycells", block="")
    assert reg.plugins["rladder.decoders"].status == "ok"
    assert reg.unmatched_patterns == [(ALLOW_ENV, "rladder-mycells")]
    reg = Registry(allow="", block="rladder")
    assert {p.status for p in reg.plugins.values() if p.distribution == "rladder"} == {"blocked"}
    assert reg.components() == []


def test_a_component_may_carry_an_example_run_for_the_conformance_kit():
    plain = comp()
    assert plain.example == {}
    with_example = Component("dataset", "toy", lambda o: None, ToyOptions, "A toy.",
                             example={"data": {"size": 1}})
    reg = Registry(entry_points=False)
    reg.add_plugin(toy_plugin(with_example), "toy-plugin")
    got = reg.get("dataset", "toy")
    assert got.example == {"data": {"size": 1}} and got.plugin == "toy-plugin"
    assert hash(got) == hash(attrs.evolve(got, example={}))   # not part of the hash (a dict is unhashable)
    with pytest.raises(TypeError):
        Component("dataset", "toy", lambda o: None, ToyOptions, "A toy.", example=[("data", {})])

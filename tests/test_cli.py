"""The launcher: commands, exit codes (0 ok, 2 usage/config, 1 runtime), one-paragraph errors."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rladder.core.cli import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))
OVERLAYS = {"hierarchical_rnn.toml": "omm_rladder.toml"}  # overlays are checked on top of their base
TINY = ROOT / "tests/configs/tiny_omm.toml"
FAULT = ROOT / "tests/helpers/fault"      # sitecustomize: test-only fault injection


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def run_split(*args):
    """Exit code, stdout and stderr apart."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def in_memory_plugin(*components):
    from rladder.registry import hookimpl

    class Plugin:
        @hookimpl
        def rladder_components(self):
            return list(components)
    return Plugin()


def test_version():
    code, out = run("--version")
    assert code == 0 and out.startswith("rladder 0.")


def test_plugins_json_lists_builtins():
    code, out = run("plugins", "--json")
    data = json.loads(out)
    names = {p["name"]: p for p in data["plugins"]}
    assert code == 0 and names["rladder.decoders"]["status"] == "ok"
    assert "decoder_cell/vanilla" in names["rladder.decoders"]["components"]


def test_list_and_patterns():
    code, out = run("list", "encoder_cell")
    assert code == 0 and "conv_lstm" in out and "vanilla" not in out
    code, out = run("list", "encoder_cell", "*lstm*")
    assert code == 0 and set(line.split()[1] for line in out.splitlines()) == {"conv_lstm", "lstm"}
    code, out = run("list", "encoder_cell", "gru")
    assert {line.split()[1] for line in out.splitlines()} == {"conv_gru", "gru"}
    code, out = run("list", "cells")
    assert code == 2 and "unknown component kind 'cells'" in out


def test_describe():
    code, out = run("describe", "encoder_cell", "conv_lstm")
    assert code == 0 and "provided by rladder.convrecurrent (rladder" in out
    assert "channels: int (default 32)" in out and "Hidden channels" in out
    code, out = run("describe", "decoder_cell", "vanilla", "--json")
    info = json.loads(out)
    assert info["plugin"] == "rladder.decoders" and {o["name"] for o in info["options"]} >= {"norm", "stable_v"}
    code, out = run("describe", "encoder_cell", "conv_lstn")
    assert code == 2 and "did you mean 'conv_lstm'" in out.lower()


def test_describe_says_the_description_once():
    code, out = run("describe", "model", "omm_rladder")    # its factory's docstring starts with the same line
    assert code == 0 and out.count("Occluded Moving MNIST RLadder (spec 4.1.3)") == 1
    code, out = run("describe", "encoder_cell", "conv_lstm")   # a docstring that says more is still shown
    assert "Convolutional LSTM" in out and "[i, f, o, g] = Norm(Conv([x; d; h]))" in out


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.name not in OVERLAYS], ids=lambda p: p.name)
def test_every_example_config_passes_check(config):
    code, out = run("check", config)
    assert code == 0, out
    assert "parameters" in out and out.strip().endswith("check passed")


def test_overlay_configs_pass_check():
    for overlay, base in OVERLAYS.items():
        code, out = run("check", ROOT / "configs/shapes" / base, ROOT / "configs/shapes" / overlay)
        assert code == 0 and "ablation: no decoder" in out, out


def test_print_config_is_a_valid_config(tmp_path):
    code, out = run("check", ROOT / "configs/shapes/omm_rladder.toml", "--set", "train.lr=5e-4", "--print-config")
    assert code == 0 and "lr = 0.0005" in out
    saved = tmp_path / "resolved.toml"
    saved.write_text(out)
    code, again = run("config", saved)
    assert code == 0 and again == out


def test_config_errors_exit_2_with_one_paragraph():
    code, out = run("check", ROOT / "configs/shapes/omm_rladder.toml", "--set", "model.levels.1.encoder.stride=3")
    assert code == 2 and out.startswith("configuration error: model.levels[1].encoder:")
    assert "Traceback" not in out
    code, out = run("check", "nope.toml")
    assert code == 2 and "does not exist" in out


def test_usage_error_exits_2():
    code, out = run("check")
    assert code == 2 and "Missing argument" in out


def test_disable_plugins_option():
    code, out = run("--disable-plugins", "rladder.decoders", "list", "decoder_cell")
    assert code == 0 and "no decoder_cells" in out
    code, out = run("--disable-plugins", "rladder.decoders", "check", ROOT / "configs/shapes/omm_rladder.toml")
    assert code == 2 and "unknown decoder_cell 'vanilla'" in out and "rladder.decoders" in out


def test_subprocess_exit_codes_and_debug(tmp_path):
    """The real console script: runtime failure -> 1, --debug shows the traceback."""
    bad = tmp_path / "nan.toml"
    bad.write_text((ROOT / "configs/shapes/omm_rladder.toml").read_text().replace(
        'reduce = "avg" }', 'reduce = "avg", norm = "batch" }'))
    exe = [sys.executable, "-m", "rladder.core"]
    out = subprocess.run([*exe, "check", str(bad), "--batch", "1"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith("error: ValueError: Expected more than 1 value")
    assert "Traceback" not in out.stderr and "--debug" in out.stderr
    out = subprocess.run([*exe, "--debug", "check", str(bad), "--batch", "1"], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" in out.stderr


def test_a_run_that_died_before_its_first_checkpoint_is_explained_and_can_be_restarted(tmp_path):
    run_dir = tmp_path / "run"
    died = subprocess.run([sys.executable, "-m", "rladder.core", "train", str(TINY), "--run-dir", str(run_dir),
                           "--no-test"], env={**os.environ, "RLADDER_TEST_FAULT": "0:3",
                                                                  "PYTHONPATH": str(FAULT)}, capture_output=True, text=True)
    assert died.returncode == 3 and (run_dir / "config.toml").is_file() and not (run_dir / "checkpoints").exists()
    explained = f"{run_dir} holds a run that stopped before its first checkpoint (metrics.jsonl reaches step 2;"
    code, out = run("train", TINY, "--run-dir", run_dir)
    assert code == 2 and explained in out
    assert f"start it over with `rladder train {TINY} --run-dir {run_dir} --restart`" in out
    code, out = run("resume", run_dir)                   # the restart command comes from meta.json
    assert code == 2 and explained in out and "does not exist" not in out
    assert f"start it over with `rladder train {TINY} --no-test --run-dir {run_dir} --restart`" in out

    code, out = run("train", TINY, "--run-dir", run_dir, "--restart", "--no-test", "--set", "train.steps=4")
    assert code == 0, out
    assert f"restarting the run in {run_dir}: removed config.toml, meta.json, metrics.jsonl" in out
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 4] and "resumed" not in json.loads((run_dir / "meta.json").read_text())

    code, out = run("train", TINY, "--run-dir", run_dir, "--restart")  # never deletes trained weights
    assert code == 2 and "holds checkpoints (last.pt, best.pt); --restart only starts over" in out
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "config.toml").is_file()
    code, out = run("train", TINY, "--run-dir", run_dir)
    assert code == 2 and "already holds a run; continue it with `rladder resume" in out


def test_a_reader_that_goes_away_ends_the_output_quietly(monkeypatch):
    """`rladder list | head -1`: the reader closes the pipe; no BrokenPipeError, no traceback, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "rladder.core", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()                                  # gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and err == ""
    # a broken pipe that is not stdout (a worker's socket, a pipe: URL) is still an error
    monkeypatch.setattr("rladder.core.cli.registry", lambda: (_ for _ in ()).throw(BrokenPipeError(32, "socket")))
    code, out = run("list")
    assert code == 1 and out.startswith("error: BrokenPipeError:")


@pytest.mark.parametrize("after", [False, True], ids=["before-the-command", "after-the-command"])
def test_launcher_options_before_or_after_the_command(after, tmp_path, monkeypatch):
    from rladder.core.cli import WARNED_ENV
    from rladder.registry import ALLOW_ENV, ConfigError

    monkeypatch.setenv(WARNED_ENV, "")

    def order(options, *command):
        return [*command, *options] if after else [*options, *command]

    code, out = run(*order(["--disable-plugins", "rladder.decoders"], "list", "decoder_cell"))
    assert code == 0 and "no decoder_cells" in out
    code, out, _ = run_split(*order(["--plugins", "mine*"], "plugins", "--json"))   # stderr: 'mine*' matches nothing
    assert code == 0 and json.loads(out)["plugins"] and os.environ[ALLOW_ENV] == "mine*"
    result = CliRunner().invoke(cli, order(["--debug"], "describe", "encoder_cell", "conv_lstn"))
    assert isinstance(result.exception, ConfigError)     # --debug lets the error through, with its traceback
    code, out = run(*order(["--disable-plugins", "none"], "data", "verify", tmp_path))   # in a sub-group too
    assert code == 2 and "has no manifest.json" in out


def test_pictures_that_replace_earlier_ones_are_named_so(tmp_path):
    run_dir = tmp_path / "run"
    code, out = run("train", TINY, "--run-dir", run_dir, "--set", "train.steps=2", "--set", "train.eval_every=2")
    first = [line for line in out.splitlines() if line.startswith("picture: ")]
    assert code == 0 and f"picture: {run_dir / 'predictions.png'}" in first and "(replaced)" not in out
    code, out = run("viz", run_dir, "--samples", "1")
    assert code == 0 and [line for line in out.splitlines() if line.startswith("picture: ")] == \
        [f"{line} (replaced)" for line in first]
    code, out = run("resume", run_dir)                   # nothing to train; the test pass draws them again
    assert code == 0 and f"picture: {run_dir / 'predictions.png'} (replaced)" in out


def test_list_and_plugins_mark_every_provider_of_a_conflicting_name():
    from rladder.registry import Component, get_registry

    reg = get_registry()
    reg.add_plugin(in_memory_plugin(Component("encoder_cell", "clashing_cell", lambda o: o, description="Mine.")),
                   "mine", "rladder-mine", "1.0")
    reg.add_plugin(in_memory_plugin(Component("encoder_cell", "clashing_cell", lambda o: o, description="Theirs."),
                                    Component("dataset", "their_data", lambda o: o)), "theirs", "rladder-theirs", "2.0")
    note = ("CONFLICT: provided by mine (rladder-mine 1.0) and theirs (rladder-theirs 2.0); "
            "block one with --disable-plugins NAME (mine or theirs)")
    code, out = run("list", "encoder_cell", "clashing")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2, out
    assert lines[0].split()[:3] == ["encoder_cell", "clashing_cell", "Mine."] and "[mine]" in lines[0]
    assert lines[1].split()[:3] == ["encoder_cell", "clashing_cell", "Theirs."] and "[theirs]" in lines[1]
    assert all(line.endswith(note) for line in lines)
    code, out = run("list", "dataset", "their_data")
    assert code == 0 and "CONFLICT" not in out
    code, out = run("list", "encoder_cell", "clashing", "--json")
    rows = json.loads(out)
    assert [(r["plugin"], r["distribution"], r["conflict"]) for r in rows] == [
        ("mine", "rladder-mine", True), ("theirs", "rladder-theirs", True)]
    assert rows[0]["providers"] == rows[1]["providers"] == ["mine (rladder-mine 1.0)", "theirs (rladder-theirs 2.0)"]
    code, out = run("list", "dataset", "their_data", "--json")
    assert json.loads(out)[0]["conflict"] is False and json.loads(out)[0]["providers"] == ["theirs (rladder-theirs 2.0)"]

    code, out = run("plugins")
    assert code == 0
    assert any(line.startswith("mine") and "ok (conflict: encoder_cell/clashing_cell also in theirs)" in line
               for line in out.splitlines()), out
    assert any(line.startswith("theirs") and "ok (conflict: encoder_cell/clashing_cell also in mine)" in line
               for line in out.splitlines()), out
    plugins = {p["name"]: p for p in json.loads(run("plugins", "--json")[1])["plugins"]}
    assert plugins["mine"]["status"] == "ok" and plugins["mine"]["conflicts"] == {"encoder_cell/clashing_cell": ["theirs"]}
    assert plugins["rladder.decoders"]["conflicts"] == {}


def test_a_plugin_pattern_that_matches_nothing_is_warned_about_once(monkeypatch):
    from rladder.core.cli import WARNED_ENV

    monkeypatch.setenv(WARNED_ENV, "")
    code, out, err = run_split("--plugins", "rladder-nonesuch", "--disable-plugins", "rladder.decoders",
                               "list", "encoder_cell")
    assert code == 0 and "conv_lstm" in out and "warning" not in out
    assert err.count("warning:") == 1, err          # rladder.decoders matches a plugin: no warning
    assert err.startswith("warning: --plugins (RLADDER_PLUGINS) pattern 'rladder-nonesuch' matches no plugin. A "
                          "pattern matches an entry-point name or a distribution name. Plugins: ")
    assert "rladder.decoders" in err and "rladder.convrecurrent" in err and "Distributions: rladder." in err
    # once per process (and the workers it starts inherit WARNED_ENV), however often the registry is loaded
    code, out, err = run_split("--plugins", "rladder-nonesuch", "list", "encoder_cell")
    assert code == 0 and err == ""
    assert "RLADDER_PLUGINS=rladder-nonesuch" in os.environ[WARNED_ENV].split("\n")
    # a typo gets a hint; a worker of a torchrun started elsewhere (RANK > 0) stays quiet
    code, _, err = run_split("--disable-plugins", "rladder.decoder", "list", "encoder_cell")
    assert err.startswith("warning: --disable-plugins (RLADDER_DISABLE_PLUGINS) pattern 'rladder.decoder' matches "
                          "no plugin (did you mean 'rladder.decoders'?).")
    monkeypatch.setenv("RANK", "1")
    code, _, err = run_split("--disable-plugins", "rladder.decodr", "list", "encoder_cell")
    assert code == 0 and err == ""


def test_kinds_are_the_declared_ones(monkeypatch):
    from rladder.registry import Component, declare_kind, declared_kinds, get_registry
    from rladder.registry import registry as registry_module

    code, out = run("describe", "encoder", "conv_lstm")
    assert code == 2 and "unknown component kind 'encoder'. Did you mean 'encoder_cell'? Kinds: encoder_cell, " \
                         "decoder_cell, task, dataset, model, loader, recipe." in out
    monkeypatch.setattr(registry_module, "_KINDS", declared_kinds())      # undone after the test
    declare_kind("widget", "a kind some plugin family adds")
    get_registry().add_plugin(in_memory_plugin(Component("widget", "gizmo", lambda o: o, description="A gizmo.")),
                              "widgets")
    code, out = run("list", "widget")
    assert code == 0 and out.split()[:3] == ["widget", "gizmo", "A"]
    code, out = run("describe", "widget", "gizmo")
    assert code == 0 and out.startswith("widget 'gizmo': A gizmo.\nprovided by widgets")
    code, out = run("list", "widgit")
    assert code == 2 and "Did you mean 'widget'?" in out and out.rstrip().endswith("recipe, widget.")

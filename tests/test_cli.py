"""The launcher: commands, exit codes (0 ok, 2 usage/config, 1 runtime), one-paragraph errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rladder.core.cli import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))
OVERLAYS = {"hierarchical_rnn.toml": "omm_rladder.toml"}  # overlays are checked on top of their base


def run(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


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

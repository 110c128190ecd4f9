"""Real third-party plugins, pip-installed into a temporary virtual environment.

The venv sees this environment's packages (rladder included) through a .pth file (so torch is not installed
again) and gets two plugin distributions of its own: `rladder-toy` (an encoder cell) and
`rladder-broken` (raises on import). Everything runs in subprocesses with that venv's python.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import sysconfig
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "tests" / "plugins"


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory):
    home = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(home)
    python = home / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # addsitedir (not a bare path) so the parent's own .pth files, such as an editable install's, apply too
    parent = sysconfig.get_paths()["purelib"]
    pathlib.Path(site, "_parent_env.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    for name in ("rladder_toy", "rladder_broken"):
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                        "--no-build-isolation", "--no-index", str(PLUGINS / name)], check=True,
                       capture_output=True, text=True)
    return python


def rladder(python, *args, cwd=None):
    return subprocess.run([str(python), "-m", "rladder.core", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_plugins_lists_the_third_party_and_the_broken_plugin(plugin_venv):
    out = rladder(plugin_venv, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    toy = plugins["rladder-toy"]
    assert toy["status"] == "ok" and toy["distribution"] == "rladder-toy" and toy["version"] == "0.3.0"
    assert toy["components"] == ["encoder_cell/toy_rnn"]
    broken = plugins["rladder-broken"]
    assert broken["status"] == "broken" and "nonexistent-dependency" in broken["error"]
    assert plugins["rladder.convrecurrent"]["status"] == "ok"
    text = rladder(plugin_venv, "plugins").stdout
    assert "rladder-broken" in text and "broken" in text and "error: ImportError" in text


def test_a_config_using_the_third_party_cell_passes_check(plugin_venv):
    out = rladder(plugin_venv, "check", PLUGINS / "rladder_toy" / "toy.toml")
    assert out.returncode == 0, out.stderr
    assert "ToyRNN" in out.stdout and out.stdout.strip().endswith("check passed")
    described = rladder(plugin_venv, "describe", "encoder_cell", "toy_rnn")
    assert "provided by rladder-toy (rladder-toy 0.3.0)" in described.stdout


def test_allow_and_block_lists(plugin_venv):
    out = rladder(plugin_venv, "--disable-plugins", "rladder-toy", "check", PLUGINS / "rladder_toy" / "toy.toml")
    assert out.returncode == 2 and "unknown encoder_cell 'toy_rnn'" in out.stderr
    out = rladder(plugin_venv, "--plugins", "rladder-broken", "plugins", "--json")
    status = {p["name"]: p["status"] for p in json.loads(out.stdout)["plugins"]}
    assert status["rladder-toy"] == "not-allowed" and status["rladder-broken"] == "broken"
    assert status["rladder.decoders"] == "ok"


def test_allow_and_block_lists_take_distribution_names_and_warn_about_patterns_that_match_nothing(plugin_venv):
    # the pip name, spelled any PEP 503 way (not the entry-point name 'rladder-toy'), selects the plugin
    out = rladder(plugin_venv, "--plugins", "Rladder_Toy", "plugins", "--json")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    status = {p["name"]: p["status"] for p in json.loads(out.stdout)["plugins"]}
    assert status["rladder-toy"] == "ok" and status["rladder-broken"] == "not-allowed"
    out = rladder(plugin_venv, "--disable-plugins", "rladder.toy", "plugins", "--json")
    toy = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}["rladder-toy"]
    assert toy["status"] == "blocked" and "matches its distribution rladder-toy" in toy["reason"]
    # a pattern that matches no plugin: one warning, with the names it could have matched
    out = rladder(plugin_venv, "--plugins", "rladder-toys", "list", "encoder_cell")
    assert out.returncode == 0 and "conv_lstm" in out.stdout and "toy_rnn" not in out.stdout
    assert out.stderr.count("warning:") == 1 and out.stderr.startswith(
        "warning: --plugins (RLADDER_PLUGINS) pattern 'rladder-toys' matches no plugin (did you mean 'rladder-toy'?)")
    assert "Plugins: rladder-broken, rladder-toy, rladder." in out.stderr    # the built-ins follow, sorted
    assert "Distributions: rladder, rladder-broken, rladder-toy." in out.stderr


def test_the_pytest_plugin_runs_conformance_for_the_third_party_cell(plugin_venv):
    out = subprocess.run([str(plugin_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rladder-plugin",
                          "rladder-toy", "check_toy.py"], capture_output=True, text=True,
                         cwd=PLUGINS / "rladder_toy", env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout

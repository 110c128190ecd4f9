"""Configs: one precedence (defaults < files in order < --set in order), resolution, TOML round trip."""

from __future__ import annotations

import tomllib

import pytest

from rladder.core.config import apply_set, load_config, load_raw, read_toml, resolve, to_dict, to_toml
from rladder.registry import ConfigError, OptionError, UnknownComponentError

BASE = """
[data]
name = "synthetic"
step_shape = [1, 8, 8]
[model]
name = "ladder"
levels = [ { encoder = { name = "conv_lstm", channels = 4 }, decoder = { name = "vanilla" } } ]
[train]
lr = 0.1
steps = 10
"""


@pytest.fixture
def files(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text(BASE)
    b = tmp_path / "b.toml"
    b.write_text("[train]\nlr = 0.2\nbatch_size = 8\n")
    return a, b


def test_precedence_defaults_files_sets(files):
    a, b = files
    cfg = load_config([a])
    assert cfg.train.lr == 0.1 and cfg.train.batch_size == 32          # file over default
    cfg = load_config([a, b])
    assert cfg.train.lr == 0.2 and cfg.train.steps == 10                # later file wins, tables merge
    cfg = load_config([a, b], ["train.lr=0.3", "train.lr=4e-4"])
    assert cfg.train.lr == 4e-4                                         # --set wins, later --set wins
    assert cfg.data["seq_len"] == 5 and cfg.data["step_shape"] == [1, 8, 8]  # component defaults filled in


def test_set_values_are_toml(files):
    a, _ = files
    raw = load_raw([a], ["train.device=cpu", "model.decoder=false", "train.betas=[0.8, 0.9]",
                         "model.levels.0.encoder.channels=6", 'data.name="synthetic"', "seed=3"])
    assert raw["train"]["device"] == "cpu" and raw["model"]["decoder"] is False
    assert raw["train"]["betas"] == [0.8, 0.9] and raw["model"]["levels"][0]["encoder"]["channels"] == 6
    assert raw["seed"] == 3 and raw["data"]["name"] == "synthetic"


@pytest.mark.parametrize("expr, fragment", [
    ("train.lr", "expected KEY=VALUE"),
    ("=3", "dotted path"),
    ("model.levels.5.encoder.channels=2", "indexes a list of 1 items"),
    ("train.lr.x=2", "is a value"),
])
def test_bad_set_expressions(files, expr, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_raw([files[0]], [expr])


def test_arrays_are_replaced_not_merged():
    raw = apply_set({"a": {"b": [1, 2, 3]}}, "a.b=[9]")
    assert raw == {"a": {"b": [9]}}


def test_errors_name_the_field(files):
    a, _ = files
    with pytest.raises(OptionError, match=r"^train.lrr: unknown option 'lrr' .*did you mean 'lr'"):
        load_config([a], ["train.lrr=1"])
    with pytest.raises(OptionError, match=r"^trian: unknown option 'trian' for the run config \(did you mean 'train'"):
        load_config([a], ["trian.lr=1"])
    with pytest.raises(OptionError, match=r"model.levels\[0\].encoder.chanels: unknown option"):
        load_config([a], ["model.levels.0.encoder.chanels=1"])
    with pytest.raises(UnknownComponentError, match=r"^data.name: unknown dataset 'synthetc'"):
        load_config([a], ["data.name=synthetc"])
    with pytest.raises(OptionError, match=r"train.decay_start: invalid value .*strictly between 0 and 1"):
        load_config([a], ["train.decay_start=1.5"])


def test_task_name_defaults_to_its_label(files):
    a, _ = files
    with pytest.raises(UnknownComponentError, match=r"tasks.mytask.name: unknown task 'mytask'"):
        load_config([a], ["tasks.mytask.weight=2"])


def test_resolved_config_round_trips_through_toml(files):
    a, b = files
    cfg = load_config([a, b], ["model.feedback=false"])
    text = to_toml(cfg)
    again = resolve(tomllib.loads(text))
    assert again == cfg and to_dict(again) == to_dict(cfg)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "nope.toml"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=1")
    with pytest.raises(ConfigError, match="bad.toml' is not valid TOML"):
        load_config([bad])


def test_a_config_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path):
    from click.testing import CliRunner

    from rladder.core.cli import cli
    from rladder.core.runs import run_config

    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes("[train]\nlr = 0.1  # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml' is not UTF-8 text \(byte 0xe9 on line 2 .*UTF-8 TOML file"):
        load_config([latin1])
    result = CliRunner().invoke(cli, ["config", str(latin1)])
    assert result.exit_code == 2 and result.output.startswith(f"configuration error: config file '{latin1}' is not")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_bytes(latin1.read_bytes())
    with pytest.raises(ConfigError, match=f"the run's config {run / 'config.toml'} is not UTF-8 text"):
        run_config(run)


def test_a_utf8_config_with_a_byte_order_mark_reads_like_one_without(tmp_path):
    bom = tmp_path / "bom.toml"
    bom.write_bytes("\ufeff[train]\nlr = 0.25\n".encode("utf-8"))
    assert read_toml(bom) == {"train": {"lr": 0.25}}

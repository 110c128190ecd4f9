"""`rladder reproduce table4 --budget smoke`: every row trains and lands in the table (CI)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rladder.core.cli import cli
from rladder.core.reproduce import markdown
from rladder.registry import get_registry

ROWS = {"rtagger", "tagger", "convnet", "rtagger_1k", "tagger_1k", "convnet_1k", "rtagger_video"}


def test_table4_smoke(tmp_path):
    out = tmp_path / "t4"
    result = CliRunner().invoke(cli, ["reproduce", "table4", "--budget", "smoke", "--seeds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "results.md").read_text()
    for row in ("AMI, RTagger (50k labelled)", "Class. error %, Tagger (50k labelled)",
                "Class. error %, ConvNet (50k labelled)", "AMI, RTagger (1k labelled + 49k)",
                "Moving MNIST AMI, RTagger (mean over frames)", "Moving MNIST AMI, RTagger (whole sequences)",
                "Moving MNIST AMI, fixed left / right halves (reference)"):
        assert f"| {row} |" in table
    assert "0.80 ± 0.01" in table and "5.9 ± 0.2" in table and "14.3 ± 0.46" in table and "| 0.75 |" in table
    data = json.loads((out / "results.json").read_text())
    assert set(data["rows"]) == ROWS
    rt = data["rows"]["rtagger"][0]
    assert {"ami/ami_t1", "ami/ami_t2", "ami/ami_t3", "classify/error_t3"} <= set(rt)
    assert -1 <= rt["ami/ami_t3"] <= 1 and 0 <= rt["classify/error_t3"] <= 100
    assert "classify/error" in data["rows"]["convnet"][0]
    video = data["rows"]["rtagger_video"][0]
    assert {"ami/ami", "ami/ami_sequence"} <= set(video) and 0 < video["ami/ami_halves"] <= 1
    labels = json.loads((out / "rtagger_1k" / "seed0" / "labels.json").read_text())
    assert labels["count"] == 40


def test_table4_rows_and_budgets():
    recipe = get_registry().build("recipe", "table4")
    assert set(recipe.budgets) == {"smoke", "cpu", "gpu", "paper"}
    assert {r.key for r in recipe.rows} == ROWS
    tagger = next(r for r in recipe.rows if r.key == "tagger")
    config = recipe.config(tagger, "cpu", 0)
    assert config["model"]["ladder"]["recurrent"] is False and config["model"]["ladder"]["feedback"] is False
    assert config["train"]["input_noise"] == config["model"]["noise_std"] == 0.2
    convnet = recipe.config(next(r for r in recipe.rows if r.key == "convnet_1k"), "cpu", 0)
    assert convnet["data"]["iterations"] == 1 and convnet["labels"]["unlabeled"] is False
    rows = {r.key: [{"ami/ami_t1": 0.5, "ami/ami_t2": 0.6, "ami/ami_t3": 0.7, "ami/ami": 0.7}] for r in recipe.rows}
    text = markdown(recipe, rows, "cpu", 1, {}, 60.0)
    assert "| AMI, RTagger (50k labelled) | 0.50 | 0.55 | 0.60 | 0.75 | 0.70 | 0.80 ± 0.01 |" in text


def test_the_grouping_configs_are_rows_of_the_cpu_table():
    """configs/grouping/rtagger_textured.toml and rtagger_moving_mnist.toml say they hold the `cpu` table's RTagger
    rows: they do, with batch norm in every textured row's ladder and nearly uniform initial masks; the video row
    keeps group norm and its smooth initial masks of std 2."""
    from pathlib import Path

    from rladder.core.config import load_config, resolve, to_dict

    reg = get_registry()
    recipe = reg.build("recipe", "table4")
    configs = {r.key: to_dict(resolve(recipe.config(r, "cpu", 0), reg)) for r in recipe.rows}
    textured = to_dict(load_config([Path(__file__).parents[1] / "configs" / "grouping" / "rtagger_textured.toml"]))
    assert textured == configs["rtagger"]
    for key in ("rtagger", "tagger", "rtagger_1k", "tagger_1k"):
        assert configs[key]["model"]["ladder"]["norm"] == "batch", key
        assert configs[key]["model"]["mask_init_std"] == 0.02, key
    assert configs["convnet"]["model"]["norm"] == configs["convnet_1k"]["model"]["norm"] == "batch"
    video = configs["rtagger_video"]["model"]
    assert video["mask_init_std"] == 2.0 and video["ladder"]["norm"] == "group"
    moving = to_dict(load_config([Path(__file__).parents[1] / "configs" / "grouping" / "rtagger_moving_mnist.toml"]))
    assert moving == configs["rtagger_video"]          # the video config is the table's moving-MNIST row

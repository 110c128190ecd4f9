"""`rladder reproduce table1 --budget smoke`: every row of Table 1 trains and lands in the table (CI)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from rladder.core.cli import cli
from rladder.core.reproduce import markdown
from rladder.registry import get_registry


def test_table1_smoke(tmp_path):
    out = tmp_path / "t1"
    result = CliRunner().invoke(cli, ["reproduce", "table1", "--budget", "smoke", "--seeds", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "results.md").read_text()
    for row in ("Optimal reconstruction + static classifier", "Temporal baseline", "Hierarchical RNN",
                "RLadder w/o prediction task", "RLadder w/o decoder-to-encoder conn.",
                "RLadder w/o classification task", "| RLadder |"):
        assert row in table
    assert "0.74 ± 0.09" in table and "150.1 ± 0.1" in table and "Budget `smoke`" in table
    data = json.loads((out / "results.json").read_text())
    assert set(data["rows"]) == {"static", "temporal_baseline", "hierarchical_rnn", "rladder_no_prediction",
                                 "rladder_no_feedback", "rladder_no_classification", "rladder"}
    assert "predict/prediction_error" not in data["rows"]["static"][0]
    assert 0 <= data["rows"]["rladder"][0]["classify/error"] <= 100
    # a second call finds every run done and only rewrites the table
    again = CliRunner().invoke(cli, ["reproduce", "table1", "--budget", "smoke", "--out", str(out)])
    assert again.exit_code == 0 and again.stderr.count("already done") == 7
    assert (out / "results.md").read_text().split("total wall time")[0] == table.split("total wall time")[0]
    # more seeds for chosen rows only: the others are read back and marked with their seed count
    more = CliRunner().invoke(cli, ["reproduce", "table1", "--budget", "smoke", "--seeds", "2", "--rows", "rladder",
                                    "--out", str(out)])
    assert more.exit_code == 0 and more.stderr.count("training") == 1, more.output
    table = (out / "results.md").read_text()
    assert "| RLadder | " in table and "(1 seed) | 0.71 ± 0.03 |" in table and " min |" in table
    assert len(json.loads((out / "results.json").read_text())["rows"]["rladder"]) == 2
    # runs of another budget (or an edited recipe) in the folder are not mixed into the table
    import tomllib
    cfg = out / "static" / "seed0" / "config.toml"
    cfg.write_text(cfg.read_text().replace(f"steps = {tomllib.loads(cfg.read_text())['train']['steps']}\n",
                                           "steps = 7\n", 1))
    stale = CliRunner().invoke(cli, ["reproduce", "table1", "--budget", "smoke", "--out", str(out)])
    assert stale.exit_code == 2 and "static seed 0: train.steps = 7, now 16" in stale.output, stale.output
    wrong = CliRunner().invoke(cli, ["reproduce", "table1", "--rows", "rladder,nope", "--out", str(out)])
    assert wrong.exit_code == 2 and "no row 'nope'" in wrong.output and "hierarchical_rnn" in wrong.output


def test_unknown_budget_is_a_config_error(tmp_path):
    result = CliRunner().invoke(cli, ["reproduce", "table1", "--budget", "huge", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown budget 'huge'" in result.output


def test_set_overrides_every_row_and_the_table_names_it(tmp_path):
    """--set (how the GPU table was shortened to the device time there was) reaches every row's run and is
    part of its configuration: a later call without it refuses the folder instead of mixing runs."""
    out = tmp_path / "t1"
    args = ["reproduce", "table1", "--budget", "smoke", "--rows", "static,rladder", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--set", "train.steps=3", "--set", "train.lr=0.004"])
    assert result.exit_code == 0, result.output
    for row in ("static", "rladder"):
        import tomllib
        cfg = tomllib.loads((out / row / "seed0" / "config.toml").read_text())
        assert cfg["train"]["steps"] == 3 and cfg["train"]["lr"] == 0.004
    assert "Budget `smoke` with `--set train.steps=3` and `--set train.lr=0.004`" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["sets"] == ["train.steps=3", "train.lr=0.004"]
    plain = CliRunner().invoke(cli, args)
    assert plain.exit_code == 2 and "rladder seed 0: train.lr = 0.004, now 0.001" in plain.output, plain.output
    bad = CliRunner().invoke(cli, [*args, "--set", "train.stepz=3"])
    assert bad.exit_code == 2 and "unknown option 'stepz'" in bad.output


def test_a_task_override_goes_to_the_rows_with_that_task(tmp_path):
    """--set tasks.<label>.<key> reaches the rows that have the task (named in the log), and no other row's config
    is changed by it; one that no row can take (a typo in the label) is refused before anything is trained."""
    out = tmp_path / "t1"
    args = ["reproduce", "table1", "--budget", "smoke", "--rows", "static,rladder", "--out", str(out),
            "--set", "train.steps=2"]
    result = CliRunner().invoke(cli, [*args, "--set", "tasks.predict.weight=7"])
    assert result.exit_code == 0, result.output
    assert "--set tasks.predict.weight=7 applies to rladder; not to static, which have no task 'predict'" in result.output
    import tomllib
    tasks = {row: tomllib.loads((out / row / "seed0" / "config.toml").read_text())["tasks"] for row in ("static", "rladder")}
    assert tasks["rladder"]["predict"]["weight"] == 7 and set(tasks["static"]) == {"classify"}
    typo = CliRunner().invoke(cli, [*args, "--set", "tasks.predcit.weight=7"])
    assert typo.exit_code == 2 and "no row trained here has a task 'predcit' (rows: static, rladder)" in typo.output


def test_markdown_mean_and_std():
    recipe = get_registry().build("recipe", "table1")
    rows = {r.key: [{"classify/error": 1.0, "predict/prediction_error": 100.0},
                    {"classify/error": 3.0, "predict/prediction_error": 110.0}] for r in recipe.rows}
    text = markdown(recipe, rows, "cpu", 2, {}, 60.0)
    assert "| RLadder | 2.00 ± 1.41 | 0.74 ± 0.09 | 105.00 ± 7.07 | 150.1 ± 0.1 |" in text


def test_table2_smoke(tmp_path):
    out = tmp_path / "t2"
    result = CliRunner().invoke(cli, ["reproduce", "table2", "--budget", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "results.md").read_text()
    assert "| Optimal reconstruction + static classifier |" in table and "| RLadder |" in table
    assert "10.49 ± 0.81" in table and "1.69 ± 0.14" in table
    data = json.loads((out / "results.json").read_text())
    assert set(data["rows"]) == {"static_a", "static_c", "temporal_a", "temporal_c", "rladder_a", "rladder_b",
                                 "rladder_c"}
    assert "mt/teacher/classify/error" in data["rows"]["rladder_c"][0]
    labels = json.loads((out / "rladder_b" / "seed0" / "labels.json").read_text())
    assert labels["count"] == 40 and len(labels["labeled"]) == 40
    # the (B) cell of models without an unsupervised task repeats their (A) run
    static_row = next(line for line in table.splitlines() if line.startswith("| Optimal"))
    cells = [c.strip() for c in static_row.split("|")[1:-1]]
    assert cells[1] == cells[3]


def test_rows_side_by_side_a_failing_row_is_reported_and_the_others_finish(tmp_path):
    """--parallel 2: separate processes with their own folders and logs; a row that fails (its loss becomes
    NaN) is reported in the table, and the other rows still finish."""
    from rladder.core import Recipe, Row
    from rladder.registry import Component, NoOptions, hookimpl

    tiny = {"data": {"name": "occluded_mnist", "train": 64, "val": 16, "test": 16},
            "model": {"name": "omm_temporal_baseline", "channels": [4, 4, 8], "top": 8},
            "tasks": {"classify": {"name": "classify"}},
            "train": {"steps": 4, "batch_size": 8, "log_every": 2, "eval_every": 2, "checkpoint_every": 2}}
    broken = {**tiny, "train": {**tiny["train"], "lr": 1e30, "clip_grad_norm": 0}}

    class Plugin:
        @hookimpl
        def rladder_components(self):
            rows = (Row("good", "good", tiny, {"err": "classify/error"}),
                    Row("broken", "broken", broken, {"err": "classify/error"}),
                    Row("good too", "good2", tiny, {"err": "classify/error"}))
            return [Component("recipe", "side_by_side", lambda o: Recipe("Side by side", ("err",), rows, {"b": {}}),
                              NoOptions, "test recipe")]

    get_registry().add_plugin(Plugin(), "side-by-side-test")
    out = tmp_path / "t"
    result = CliRunner().invoke(cli, ["reproduce", "side_by_side", "--budget", "b", "--out", str(out),
                                      "--parallel", "2"])
    assert result.exit_code == 1, result.output       # the table is written, and the failure still shows
    assert "Error: 1 run(s) failed: broken (1); the table lists why" in result.output
    table = (out / "results.md").read_text()
    assert "| broken | failed |" in table and "Failed runs:" in table
    assert str(out / "broken" / "seed0.log") in table             # the failure names its log
    for key in ("good", "good2"):
        assert (out / key / "seed0" / "eval-test.json").is_file() and (out / key / "seed0.log").is_file()
    assert "NaN or inf" in (out / "broken" / "seed0.log").read_text()
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]["good"]) == len(data["rows"]["good2"]) == 1 and data["failed"]["broken"]


def test_the_readme_main_job_is_the_rladder_row_of_the_cpu_table():
    """README quotes the seed spread of Table 1's `cpu` RLadder row for configs/omm/rladder_quick.toml."""
    from pathlib import Path

    from rladder.core.config import load_config, resolve, to_dict

    reg = get_registry()
    recipe = reg.build("recipe", "table1")
    row = next(r for r in recipe.rows if r.key == "rladder")
    table = to_dict(resolve(recipe.config(row, "cpu", 0), reg))
    quick = to_dict(load_config([Path(__file__).parents[1] / "configs" / "omm" / "rladder_quick.toml"]))
    table["train"].pop("threads"), quick["train"].pop("threads")
    assert quick == table


def test_the_long_cpu_budget_is_the_cpu_budget_with_twice_the_steps():
    """docs/results.md measured `--budget cpu --set train.steps=5000 --set tasks.predict.weight_ramp_steps=2000`
    (rows with both tasks) and `--set train.steps=5000` (the others) before `cpu-long` existed: the same runs."""
    from rladder.core.config import resolve, to_dict

    reg = get_registry()
    recipe = reg.build("recipe", "table1")
    for row in recipe.rows:
        long = to_dict(resolve(recipe.config(row, "cpu-long", 0), reg))
        short = to_dict(resolve(recipe.config(row, "cpu", 0), reg))
        short["train"]["steps"] = 5000
        if row.key in ("rladder", "rladder_no_feedback"):
            assert short["tasks"]["predict"]["weight_ramp_steps"] == 1000
            short["tasks"]["predict"]["weight_ramp_steps"] = 2000
        assert long == short, row.key


def test_seeds_can_be_listed_to_add_seeds_to_a_table(tmp_path):
    """`--seeds 2,3` trains exactly those seeds (no seed 0 or 1 appears) and the table names them;
    seeds trained earlier in the folder join its table; a count or list that is not one is refused
    before anything is trained."""
    out = tmp_path / "t1"
    args = ["reproduce", "table1", "--budget", "smoke", "--rows", "static", "--set", "train.steps=3", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--seeds", "2,3"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "static").iterdir() if p.is_dir()) == ["seed2", "seed3"]
    assert "2 seed(s) (2, 3) per run" in (out / "results.md").read_text()
    assert json.loads((out / "results.json").read_text())["seeds"] == [2, 3]
    assert len(json.loads((out / "results.json").read_text())["rows"]["static"]) == 2
    assert "different numerics" not in (out / "results.md").read_text()    # one machine, one thread count
    # seed 2 as if trained on another machine: its figures are not bit-comparable, and the table says so
    meta_path = out / "static" / "seed2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["numerics"].update(cpu="Other CPU", cpu_capability="AVX2")
    meta_path.write_text(json.dumps(meta))
    # another seed into the same folder: the seeds trained there earlier are read back into its table
    more = CliRunner().invoke(cli, [*args, "--seeds", "1"])
    assert more.exit_code == 0 and more.stderr.count("training") == 1, more.output
    assert "seeds 2, 3 were trained earlier" in more.stderr and more.stderr.count("already done") == 2
    assert "[Optimal reconstruction + static classifier seed 2] already done (on Other CPU, AVX2, " in more.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["seeds"] == [0, 2, 3] and len(data["rows"]["static"]) == 3
    table = (out / "results.md").read_text()
    assert "3 seed(s) (0, 2, 3) per run" in table
    assert "The runs were made on different numerics" in table
    assert [line.split(": ")[1] for line in table.splitlines() if line.startswith("- ")] == [
        "static seed 2", "static seed 3, static seed 0"]
    assert sorted(sum(data["numerics"].values(), [])) == ["static seed 0", "static seed 2", "static seed 3"]
    for bad in ("0", "-1,2", "two"):
        refused = CliRunner().invoke(cli, [*args, "--seeds", bad])
        assert refused.exit_code == 2 and "Invalid value for --seeds" in refused.output, refused.output
        assert "give a count of at least 1" in refused.output

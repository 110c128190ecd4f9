"""Training: files of a run, exact resume, Ctrl-C, NaN stops, eval / predict / viz from the folder."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from unittest.mock import ANY

import attrs
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rladder.core import Needs, Task, TaskOptions, checkpoint
from rladder.core.cli import cli
from rladder.core.train import Interrupted, TrainingStopped, lr_factor
from rladder.core.config import TrainConfig
from rladder.core.interfaces import to_device
from rladder.core.objective import cap_norms, corrupt, prepare, project_conflict
from rladder.registry import Component, ConfigError, get_registry, hookimpl

TINY = pathlib.Path(__file__).resolve().parent / "configs" / "tiny_omm.toml"


@pytest.fixture
def config_file():
    return TINY


def params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_a_run_writes_its_folder_and_learns(config_file, tmp_path, make_trainer):
    trainer = make_trainer(config_file, tmp_path / "run", "train.steps=30", "train.eval_every=15", "train.lr=3e-3")
    trainer.fit()
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"config.toml", "meta.json", "metrics.jsonl", "checkpoints"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert {"lr", "samples_per_s", "data_wait", "predict/loss", "classify/loss"} <= set(train[0])
    # the instruments: gradient norms before clipping, share clipped, RMS of e_l(t) and d_l(t) per level
    assert {"grad_norm", "grad_norm_max", "clipped", "grad_norm/encoder.0", "grad_norm/decoder.6",
            "grad_norm/heads.class", "rms/encoder.0", "rms/decoder.0", "rms/feedback.0"} <= set(train[0])
    assert all(0 <= r["clipped"] <= 1 and r["grad_norm_max"] >= r["grad_norm"] > 0 for r in train)
    assert [r["step"] for r in records if r["split"] == "val"] == [15, 30]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 30 and {"model", "tasks", "optimizer", "scheduler", "rng", "loader", "config",
                                    "plugins", "best"} <= set(state)
    assert state["plugins"]["rladder.omm_models"].startswith("rladder ")
    meta = json.loads((run / "meta.json").read_text())
    assert meta["device"] == "cpu"
    # what the figures depend on beyond the config: the CPU's ISA (kernel choice) and the thread count
    assert meta["numerics"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert meta["numerics"]["threads"] == torch.get_num_threads() and meta["numerics"]["gpu"] == ""


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory):
    from rladder.core.shards import build
    out = tmp_path_factory.mktemp("tiny") / "shards"
    build({"name": "occluded_mnist", "train": 64, "val": 32, "test": 32}, out, shard_size=8, log=lambda m: None)
    return out


@pytest.mark.parametrize("loader", ["memory", "shards"])
def test_resume_is_bit_identical_on_cpu(config_file, tmp_path, make_trainer, interrupt, loader, request):
    sets = []
    if loader == "shards":       # resampled shards, 3 steps per epoch: the interruption falls mid-epoch
        sets = ["loader.name=webdataset", f"loader.shards={request.getfixturevalue('tiny_shards')}",
                "loader.steps_per_epoch=3", "loader.shuffle_buffer=16"]
    whole = make_trainer(config_file, tmp_path / "whole", *sets)
    whole.fit()

    part = make_trainer(config_file, tmp_path / "part", *sets)
    interrupt(part, 5)
    with pytest.raises(Interrupted, match="interrupted at step 5; checkpoint saved"):
        part.fit()
    assert checkpoint.load(part.last_path)["step"] == 5
    meta_path = tmp_path / "part" / "meta.json"       # as if the run had been started on another machine
    meta = json.loads(meta_path.read_text())
    here = dict(meta["numerics"])
    meta["numerics"]["cpu_capability"] = "ANOTHER_ISA"
    meta_path.write_text(json.dumps(meta))
    resumed = make_trainer(config_file, tmp_path / "part", *sets, resume=True)
    assert resumed.step == 5
    resumed.fit()
    # the resume on other numerics is recorded (the weights below match: this machine ran both runs)
    assert json.loads(meta_path.read_text())["resumed"] == [{"step": 5, "at": ANY, "numerics": here}]
    a, b = params(whole), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    sa, sb = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set((s, i) for i, s in enumerate(steps)))
    if loader == "shards":
        with pytest.raises(ConfigError, match="holds the data position of loader 'webdataset', which loader "
                                              "'memory' cannot continue from"):
            make_trainer(config_file, tmp_path / "part", resume=True)


@attrs.frozen
class NanOptions(TaskOptions):
    at: int = 5


class NanTask(Task):
    """Finite for the first calls, then NaN."""

    def __init__(self, options, spec, label):
        super().__init__(label, options.weight)
        self.at, self.calls = options.at, 0

    def needs(self):
        return Needs(("heads.class",), ())

    def loss(self, outputs, batch):
        self.calls += 1
        value = outputs["heads.class"].mean()
        return value * float("nan") if self.calls >= self.at else value


class NanPlugin:
    @hookimpl
    def rladder_components(self):
        return [Component("task", "nan_after", NanTask, NanOptions, "Becomes NaN.")]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(config_file, tmp_path, make_trainer):
    get_registry().add_plugin(NanPlugin(), "nan-plugin")
    trainer = make_trainer(config_file, tmp_path / "run", "tasks.nan.name=nan_after", "tasks.nan.at=6",
                           "train.checkpoint_every=2", "train.eval_every=100")
    with pytest.raises(TrainingStopped, match="NaN or inf by step 6 .*last good checkpoint is"):
        trainer.fit()
    state = checkpoint.load(trainer.last_path)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_schedule():
    cfg = TrainConfig(steps=100, decay_start=0.5, warmup_steps=10)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == 1.0
    assert lr_factor(50, cfg) == 1.0 and lr_factor(75, cfg) == pytest.approx(0.5) and lr_factor(100, cfg) == 0.0
    cos = attrs.evolve(cfg, schedule="cosine", warmup_steps=0)
    assert lr_factor(0, cos) == 1.0 and lr_factor(50, cos) == pytest.approx(0.5)


def test_a_task_weight_ramp_is_the_weight_in_force_at_every_step(config_file, tmp_path, make_trainer):
    """tasks.<label>.weight_ramp_*: the logged loss is the sum of the costs weighted as ramped at each step."""
    assert TaskOptions(weight=8.0).weight_factor(5) == 1.0                       # no ramp: constant
    down = TaskOptions(weight=8.0, weight_ramp_steps=4, weight_ramp_from=3.0)
    assert [down.weight_factor(s) for s in (0, 2, 4, 9)] == [3.0, 2.0, 1.0, 1.0]
    trainer = make_trainer(config_file, tmp_path / "run", "train.steps=6", "train.log_every=1",
                           "tasks.predict.weight=10", "tasks.predict.weight_ramp_steps=4", "tasks.classify.weight=2")
    trainer.fit()
    train = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["split"] == "train"]
    assert [r["predict/weight"] for r in train] == [0.0, 2.5, 5.0, 7.5, 10.0, 10.0]
    assert "classify/weight" not in train[0]                                      # no ramp, nothing logged
    for r in train:
        assert r["loss"] == pytest.approx(r["predict/weight"] * r["predict/loss"] + 2 * r["classify/loss"], rel=1e-5)
    # the ramp is a function of the step: a resumed run puts the weight of its next step in force;
    # outside training (a built run, as `rladder eval` builds it) the full weight holds
    assert float(trainer.tasks["predict"].weight_scale) == 1.0
    fresh = make_trainer(config_file, tmp_path / "other", "tasks.predict.weight_ramp_steps=4")
    assert fresh.tasks["predict"].weight_ramp is not None and float(fresh.tasks["predict"].weight_scale) == 1.0


def test_a_bad_weight_ramp_is_refused_where_it_is_written(config_file, tmp_path, make_trainer):
    with pytest.raises(ConfigError, match="weight_ramp_steps"):
        make_trainer(config_file, tmp_path / "run", "tasks.predict.weight_ramp_steps=-5")


def test_the_decoder_gradient_ramp_opens_the_encoder_to_the_decoders_step_by_step(config_file, tmp_path,
                                                                                  make_trainer):
    """train.decoder_grad_ramp_steps: the trainer sets the engine's gate each step and logs the scale in force."""
    trainer = make_trainer(config_file, tmp_path / "run", "train.steps=6", "train.log_every=1",
                           "train.decoder_grad_ramp_steps=4")
    trainer.fit()
    train = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["decoder_grad/scale"] for r in train if r["split"] == "train"] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert not trainer.decoder_gates[0].active                  # at full scale the gate is out of the graph
    assert trainer.decoder_gates == [trainer.model.decoder_grad]   # the engine's gate (its effect: test_ladder.py)


def test_a_decoder_gradient_ramp_without_a_decoder_is_refused(config_file, tmp_path, make_trainer):
    classify_only = tmp_path / "classify.toml"
    classify_only.write_text(config_file.read_text().replace('[tasks.predict]\nname = "next_step"\n', ""))
    with pytest.raises(ConfigError, match="decoder_grad_ramp_steps = 3 needs a model with a decoder, and model "
                                          "'omm_hierarchical_rnn' has none"):
        make_trainer(classify_only, tmp_path / "run", "model.name=omm_hierarchical_rnn",
                     "train.decoder_grad_ramp_steps=3")


def test_frozen_link_gates_keep_the_rladder_its_no_link_ablation_until_they_open(config_file, tmp_path,
                                                                                make_trainer):
    """train.link_gates_frozen_steps: the learned gates stay at gate_init (0) for that many steps, while the
    rest of the model trains; then they learn, with Adam's moments starting at the opening step."""
    gates_after = []
    trainer = make_trainer(config_file, tmp_path / "run", "train.steps=6", "train.lr=1e-2",
                           "train.link_gates_frozen_steps=3",
                           callbacks=[lambda t: gates_after.append([g.detach().clone() for g in t.link_gates])])
    others = {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.endswith("feedback.gate")}
    trainer.fit()
    assert len(trainer.link_gates) == len(trainer.model.levels)        # one learned gate per linked level
    for step, gates in enumerate(gates_after, start=1):
        opened = any(bool(g.abs().sum() > 0) for g in gates)
        assert opened == (step > 3), f"after step {step}"
    assert any(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in others.items())
    assert all(int(trainer.optimizer.state[g]["step"]) == 3 for g in trainer.link_gates)


def test_frozen_link_gates_without_learned_gates_are_refused(config_file, tmp_path, make_trainer):
    with pytest.raises(ConfigError, match="link_gates_frozen_steps = 5 needs learned decoder-to-encoder link "
                                          "gates, and model 'omm_rladder' has none .*model.links.gate"):
        make_trainer(config_file, tmp_path / "run", "train.link_gates_frozen_steps=5", "model.links.gate=none")


def test_one_sided_projection_removes_only_the_part_that_opposes_the_main_gradient():
    main = [torch.tensor([1.0, 0.0]), torch.tensor([0.0])]
    opposing = [torch.tensor([-2.0, 3.0]), torch.tensor([0.0])]
    summed, cos = project_conflict(main, opposing)
    # the opposing -2 along main is removed, the orthogonal 3 kept, the main gradient added unchanged
    assert torch.equal(summed[0], torch.tensor([1.0, 3.0])) and float(cos) == pytest.approx(-2 / 13 ** 0.5)
    agreeing = [torch.tensor([2.0, 3.0]), torch.tensor([1.0])]
    summed, cos = project_conflict(main, agreeing)
    assert torch.equal(summed[0], torch.tensor([3.0, 3.0])) and torch.equal(summed[1], torch.tensor([1.0]))
    assert float(cos) > 0


def test_the_norm_cap_shrinks_the_other_gradient_only_where_it_outweighs_the_main_one():
    main = [torch.tensor([3.0, 4.0]), torch.tensor([1.0]), torch.tensor([0.0, 0.0])]
    other = [torch.tensor([0.0, 10.0]), torch.tensor([0.5]), torch.tensor([7.0, 0.0])]
    summed, share = cap_norms(main, other)
    assert torch.allclose(summed[0], torch.tensor([3.0, 9.0]))     # norm 10 scaled to the main task's 5
    assert torch.equal(summed[1], torch.tensor([1.5]))               # smaller than the main task's: kept
    assert torch.equal(summed[2], torch.tensor([7.0, 0.0]))          # a tensor only the others train: kept
    assert float(share) == 0.5                                        # 1 of the 2 shared tensors was capped


def test_protect_task_sums_the_projected_gradients_of_its_two_backward_passes(config_file, tmp_path, make_trainer):
    """train.protect_task: the step's gradient is the main task's plus the others' without the opposing
    part, computed here independently from the same batch; the cosine and share of projected steps are logged."""
    trainer = make_trainer(config_file, tmp_path / "run", "train.protect_task=classify", "train.steps=3",
                           "train.log_every=1", "train.clip_grad_norm=0")
    batch = to_device(next(trainer._batches()), trainer.device)
    trainer._train_step(batch)    # at initialisation the decoders pass no prediction gradient to the encoder
    torch.manual_seed(0)
    pair, _ = trainer._forward_loss(prepare(trainer.tasks, trainer.model, corrupt(batch, trainer.cfg.input_noise)))
    main = torch.autograd.grad(pair[0], trainer.params, retain_graph=True, allow_unused=True)
    other = torch.autograd.grad(pair[1], trainer.params, allow_unused=True)
    zero = lambda gs: [torch.zeros_like(p) if g is None else g for g, p in zip(gs, trainer.params)]
    main, other = zero(main), zero(other)
    dot = sum(float((m * o).sum()) for m, o in zip(main, other))
    assert any(float(o.abs().sum()) > 0 for o in other) and dot != 0
    torch.manual_seed(0)
    trainer._train_step(batch)
    coef = min(0.0, dot / sum(float(m.pow(2).sum()) for m in main))
    for p, m, o in zip(trainer.params, main, other):
        if p.grad is None:        # no cost reaches it: left without a gradient, as a plain backward leaves it
            assert not m.any() and not o.any()
        else:
            torch.testing.assert_close(p.grad, o + (1 - coef) * m, rtol=1e-4, atol=1e-7)
    trainer.fit()
    train = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in train if r["split"] == "train"]
    assert len(records) == 3 and all(-1 <= r["protect/cosine"] <= 1 and 0 <= r["protect/projected"] <= 1
                                     for r in records)


def test_protect_by_norm_cap_caps_the_other_tasks_per_parameter_tensor(config_file, tmp_path, make_trainer):
    trainer = make_trainer(config_file, tmp_path / "run", "train.protect_task=classify", "train.protect_by=norm_cap",
                           "tasks.predict.weight=100", "train.steps=3", "train.log_every=1", "train.clip_grad_norm=0")
    batch = to_device(next(trainer._batches()), trainer.device)
    for _ in range(3):            # the prediction gradient reaches the encoder as the decoders start to pass it
        trainer._train_step(batch)
    torch.manual_seed(0)
    pair, _ = trainer._forward_loss(prepare(trainer.tasks, trainer.model, corrupt(batch, trainer.cfg.input_noise)))
    zero = lambda gs: [torch.zeros_like(p) if g is None else g for g, p in zip(gs, trainer.params)]
    main = zero(torch.autograd.grad(pair[0], trainer.params, retain_graph=True, allow_unused=True))
    other = zero(torch.autograd.grad(pair[1], trainer.params, allow_unused=True))
    assert any(o.norm() > m.norm() > 0 for m, o in zip(main, other))   # prediction outweighs somewhere
    torch.manual_seed(0)
    trainer._train_step(batch)
    for p, m, o in zip(trainer.params, main, other):
        factor = min(1.0, float(m.norm() / o.norm())) if m.norm() > 0 and o.norm() > 0 else 1.0
        grad = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(grad, m + factor * o, rtol=1e-4, atol=1e-7)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < r["protect/capped"] <= 1 for r in records if r["split"] == "train")


def test_link_gradient_tasks_keep_the_other_tasks_out_of_the_decoders(config_file, tmp_path, make_trainer):
    """train.link_gradient_tasks = ['predict']: classification's gradient stops at the links d_l(t-1) ->
    encoder l, so it reaches no decoder; the step's gradient is that plus prediction's through the open links."""
    trainer = make_trainer(config_file, tmp_path / "run", 'train.link_gradient_tasks=["predict"]',
                           "tasks.predict.weight=100", "train.steps=3", "train.clip_grad_norm=0")
    batch = to_device(next(trainer._batches()), trainer.device)
    for _ in range(3):            # the link gates leave 0, so gradient can pass through the links
        trainer._train_step(batch)
    decoders = {id(p) for name, p in trainer.model.named_parameters() if ".decoder." in name}
    assert decoders

    def grads(open_: bool):
        torch.manual_seed(0)
        pair, _ = trainer._forward_loss(prepare(trainer.tasks, trainer.model, corrupt(batch, trainer.cfg.input_noise)))
        trainer.link_switches[0].open = open_
        first = torch.autograd.grad(pair[0], trainer.params, retain_graph=True, allow_unused=True)
        trainer.link_switches[0].open = True
        return first, torch.autograd.grad(pair[1], trainer.params, allow_unused=True)
    zero = lambda g, p: torch.zeros_like(p) if g is None else g
    classify_open, _ = grads(True)
    classify, predict = grads(False)
    on_decoders = lambda gs: sum(float(zero(g, p).abs().sum()) for g, p in zip(gs, trainer.params) if id(p) in decoders)
    assert on_decoders(classify_open) > 0 and on_decoders(classify) == 0      # through the links, and stopped there
    assert on_decoders(predict) > 0
    torch.manual_seed(0)
    trainer._train_step(batch)
    for p, c, q in zip(trainer.params, classify, predict):
        torch.testing.assert_close(zero(p.grad, p), zero(c, p) + zero(q, p), rtol=1e-4, atol=1e-7)


def test_link_gradient_tasks_must_name_some_but_not_all_tasks_of_a_model_with_links(config_file, tmp_path,
                                                                                   make_trainer):
    with pytest.raises(ConfigError, match="train.link_gradient_tasks names 'predcit', not a task of this run; "
                                          "its tasks are: predict, classify"):
        make_trainer(config_file, tmp_path / "a", 'train.link_gradient_tasks=["predcit"]')
    with pytest.raises(ConfigError, match="lists every task of this run"):
        make_trainer(config_file, tmp_path / "b", 'train.link_gradient_tasks=["predict", "classify"]')
    with pytest.raises(ConfigError, match="runs in eager mode only"):
        make_trainer(config_file, tmp_path / "d", 'train.link_gradient_tasks=["predict"]', "train.compile=true")
    with pytest.raises(ConfigError, match="needs a model with decoder-to-encoder links, and model "
                                          "'omm_rladder_no_feedback' has none"):
        make_trainer(config_file, tmp_path / "c", 'train.link_gradient_tasks=["predict"]',
                     "model.name=omm_rladder_no_feedback")


def test_a_protected_task_must_exist_and_have_others_to_be_protected_from(config_file, tmp_path, make_trainer):
    with pytest.raises(ConfigError, match="train.protect_task = 'clasify' is not a task of this run; its tasks "
                                          "are: predict, classify"):
        make_trainer(config_file, tmp_path / "a", "train.protect_task=clasify")
    classify_only = tmp_path / "classify.toml"
    classify_only.write_text(config_file.read_text().replace('[tasks.predict]\nname = "next_step"\n', ""))
    with pytest.raises(ConfigError, match="needs at least one other task"):
        make_trainer(classify_only, tmp_path / "b", "model.name=omm_hierarchical_rnn", "train.protect_task=classify")


def test_cli_train_eval_predict_viz(config_file, tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(config_file), "--run-dir", str(run), "--set", "train.steps=4"])
    assert result.exit_code == 0, result.output
    assert "test (best checkpoint, step 4)" in result.output and "classify/error" in result.output
    assert "predict/prediction_error" in result.output
    for name in ("curves.png", "diagnostics.png", "predictions.png", "eval-test.json"):
        assert (run / name).is_file() and (run / name).stat().st_size > 200
    assert (run / "predictions.png").read_bytes()[:4] == b"\x89PNG"
    again = runner.invoke(cli, ["train", str(config_file), "--run-dir", str(run)])
    assert again.exit_code == 2 and "already holds a run; continue it with `rladder resume" in again.output

    result = runner.invoke(cli, ["eval", str(run), "--split", "val", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["metrics"]["classify/error"] >= 0
    assert (run / "eval-val.json").is_file()
    own = (run / "eval-test.json").read_bytes()             # the run's result, written at the end of training
    result = runner.invoke(cli, ["eval", str(run), "--checkpoint", "last"])
    assert result.exit_code == 0 and json.loads((run / "eval-test-last.json").read_text())["checkpoint"] == "last"
    assert (run / "eval-test.json").read_bytes() == own      # evaluating the last checkpoint does not replace it

    frames = (np.random.default_rng(0).random((3, 5, 1, 32, 32)) * 255).astype(np.uint8)
    np.save(tmp_path / "in.npy", frames)
    result = runner.invoke(cli, ["predict", str(run), "--input", str(tmp_path / "in.npy"),
                                 "--output", str(tmp_path / "out.npz")])
    assert result.exit_code == 0, result.output
    out = np.load(tmp_path / "out.npz")
    assert out["next_frame"].shape == (3, 5, 1, 32, 32) and out["class_probs"].shape == (3, 5, 10)
    np.testing.assert_allclose(out["class_probs"].sum(-1), 1, rtol=1e-5)
    result = runner.invoke(cli, ["predict", str(run), "--input", str(tmp_path / "in.npy"), "--rollout", "4",
                                 "--output", str(tmp_path / "roll.npz")])
    assert result.exit_code == 0, result.output
    roll = np.load(tmp_path / "roll.npz")["rollout"]
    assert roll.shape == (3, 4, 1, 32, 32) and 0 <= roll.min() and roll.max() <= 1
    np.testing.assert_allclose(roll[:, 0], out["next_frame"][:, -1], atol=1e-6)   # first = last open-loop prediction
    np.save(tmp_path / "one.npy", frames[0])                       # one sequence without N
    assert runner.invoke(cli, ["predict", str(run), "--input", str(tmp_path / "one.npy")]).exit_code == 0
    np.save(tmp_path / "bad.npy", frames[:, :, :, :16])
    bad = runner.invoke(cli, ["predict", str(run), "--input", str(tmp_path / "bad.npy")])
    assert bad.exit_code == 2 and "does not fit this model; expected (N, T, 1, 32, 32)" in bad.output

    (run / "checkpoints" / "best.pt").write_bytes(b"garbage")
    broken = runner.invoke(cli, ["eval", str(run)])
    assert broken.exit_code == 1 and "best.pt cannot be read" in broken.output
    missing = runner.invoke(cli, ["eval", str(tmp_path)])
    assert missing.exit_code == 2 and "not an rladder run folder" in missing.output

    result = runner.invoke(cli, ["resume", str(run), "--no-test"])
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(config_file, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rladder.core", "train", str(config_file), "--run-dir", str(run),
                             "--set", "train.steps=100000", "--set", "train.log_every=1", "--no-test"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    for line in proc.stderr:
        if line.startswith("step 2/"):
            break
        assert time.time() < deadline, "no progress line"
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    assert "checkpoint saved" in rest and "rladder resume" in rest and "Traceback" not in rest
    step = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert step >= 2 and not list((run / "checkpoints").glob("*.part"))


def test_instruments_clip_exactly_like_torch_and_split_the_norm_by_part():
    from rladder.core.instruments import Instruments

    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    ref_a, ref_b = torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
    ref_a.load_state_dict(a.state_dict())
    ref_b.load_state_dict(b.state_dict())
    inst = Instruments({"a": a, "b": b}, {"a": a.parameters(), "b": b.parameters()})
    x = torch.randn(5, 4)
    for max_norm, scale in ((0.5, 10.0), (100.0, 1.0)):
        for m in (a, b, ref_a, ref_b):
            m.zero_grad()
        inst.active = True
        (b(a(x)) * scale).sum().backward()
        inst.active = False
        (ref_b(ref_a(x)) * scale).sum().backward()
        total = inst.clip(max_norm)
        ref_total = torch.nn.utils.clip_grad_norm_([*ref_a.parameters(), *ref_b.parameters()], max_norm)
        torch.testing.assert_close(total, ref_total)
        for p, q in zip([*a.parameters(), *b.parameters()], [*ref_a.parameters(), *ref_b.parameters()]):
            torch.testing.assert_close(p.grad, q.grad)
    record = inst.record()
    assert record["clipped"] == 0.5                       # the first step was clipped, the second not
    norms = [record["grad_norm/a"], record["grad_norm/b"]]
    assert all(n > 0 for n in norms) and record["rms/a"] > 0 and record["rms/b"] > 0
    assert inst.record() == {}                            # a fresh interval


def test_the_schedule_can_follow_the_deadline():
    cfg = TrainConfig(steps=1000, decay_start=0.5, max_minutes=10, schedule_by="time")
    assert lr_factor(100, cfg, time_fraction=0.2) == 1.0
    assert lr_factor(100, cfg, time_fraction=0.75) == pytest.approx(0.5)     # time runs out before the steps
    assert lr_factor(900, cfg, time_fraction=0.1) == pytest.approx(0.2)      # the steps run out first
    by_steps = TrainConfig(steps=1000, decay_start=0.5, max_minutes=10)
    assert lr_factor(100, by_steps, time_fraction=0.75) == 1.0


def test_with_a_schedule_by_time_the_ramps_follow_the_deadline_too(config_file, tmp_path, make_trainer):
    """schedule_by = "time": a run capped by max_minutes goes through its weight and decoder-gradient ramps at the
    same share of its time as its lr decay, so a ramp counted in steps is not cut short by the deadline."""
    overrides = ("train.steps=1000", "train.max_minutes=10", "train.schedule_by=time",
                 "tasks.predict.weight_ramp_steps=400", "train.decoder_grad_ramp_steps=800")
    trainer = make_trainer(config_file, tmp_path / "run", *overrides)
    trainer.step, trainer.clock = 10, 0.3 * 600            # step 10 of 1,000, but 30 % of the 10 minutes used
    assert trainer.schedule_step() == 300
    trainer._train_step(next(trainer._batches()))
    assert float(trainer.tasks["predict"].weight_scale) == pytest.approx(300 / 400)
    assert float(trainer.decoder_gates[0].scale) == pytest.approx(300 / 800)
    trainer.step = 900                                      # the steps further on than the time: they count
    assert trainer.schedule_step() == 900
    by_steps = make_trainer(config_file, tmp_path / "steps", *overrides[:2], *overrides[3:])
    by_steps.step, by_steps.clock = 10, 0.3 * 600
    assert by_steps.schedule_step() == 10


def test_a_run_ends_cleanly_at_its_deadline(config_file, tmp_path):
    """max_minutes: validation, checkpoints (last and best), then the test evaluation, as at a normal end."""
    run_dir = tmp_path / "run"
    out = CliRunner().invoke(cli, ["train", str(config_file), "--run-dir", str(run_dir), "--no-pictures",
                                   "--set", "train.steps=100000", "--set", "train.max_minutes=0.02",
                                   "--set", "train.schedule_by=time"])
    assert out.exit_code == 0, out.output
    meta = json.loads((run_dir / "meta.json").read_text())
    step = meta["stopped_at_deadline"]["step"]
    assert 0 < step < 100000 and meta["stopped_at_deadline"]["minutes"] >= 0.02
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == step and (run_dir / "checkpoints" / "best.pt").is_file()
    val = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert val[-1]["split"] == "val" and val[-1]["step"] == step
    assert json.loads((run_dir / "eval-test.json").read_text())["step"] == step
    assert f"reached at step {step} of 100000" in out.output
    out = CliRunner().invoke(cli, ["resume", str(run_dir), "--no-test"])    # the budget is spent: nothing to do
    assert out.exit_code == 0 and "used its train.max_minutes" in out.output


def test_the_compiled_step_gives_the_losses_of_the_eager_step(config_file, tmp_path, make_trainer):
    """train.compile (+ compile_optimizer): the same first losses as eager. The aot_eager backend traces
    the step the way a CUDA-graph capture does (one graph for forward and costs, AOT backward, a
    compiled Adam with a tensor learning rate) without generating code, so CI can afford it."""
    small = tmp_path / "small.toml"          # two levels and three frames keep the tracing short
    small.write_text(config_file.read_text().replace('[model]\nname = "omm_rladder"\nchannels = [4, 4, 8]\ntop = 8\n', """
[model]
name = "ladder"
levels = [{ encoder = { name = "conv_lstm", channels = 4 }, decoder = { name = "vanilla" } },
          { encoder = { name = "lstm", units = 8, reduce = "max" }, decoder = { name = "vanilla" } }]
heads = [{ name = "frame", source = "decoder.0", out = "input" },
         { name = "class", source = "encoder.-1", kind = "classifier", out = "classes" }]
""").replace("[data]\n", "[data]\nframes = 3\n"))
    assert 'name = "ladder"' in small.read_text()
    losses = {}
    for name, sets in {"eager": [], "compiled": ["train.compile=true", "train.compile_backend=aot_eager",
                                                  "train.compile_optimizer=true"]}.items():
        trainer = make_trainer(small, tmp_path / name, "train.steps=4", "train.log_every=1", *sets)
        trainer.fit()
        lines = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        losses[name] = [r["loss"] for r in lines if r["split"] == "train"]
    assert len(losses["eager"]) == 4
    worst = max(abs(a - b) for a, b in zip(losses["eager"], losses["compiled"]))
    print(f"compiled vs eager, first {len(losses['eager'])} losses: worst difference {worst:.2e}")
    assert worst <= 1e-5, f"compiled and eager losses differ by {worst:.2e}: {losses}"


def test_with_cuda_graphs_only_the_forward_and_backward_are_captured_not_the_optimizer(config_file, tmp_path,
                                                                                          make_trainer, monkeypatch):
    """compile_mode reduce-overhead + compile_optimizer: on an H200 a captured Adam reading the gradients the
    captured backward left in the graph pool crashed ("accessing tensor output of CUDAGraphs that has been
    overwritten"), so Adam is compiled without CUDA graphs and each step marks a new graph generation."""
    import torch

    modes, marks = [], []
    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, backend=None: modes.append(mode) or fn)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    graphs = ["train.compile=true", "train.compile_mode=reduce-overhead"]
    make_trainer(config_file, tmp_path / "a", *graphs, "train.compile_optimizer=true")
    assert modes == ["reduce-overhead", None]          # the forward and costs captured, the optimizer fused only
    make_trainer(config_file, tmp_path / "b", "train.steps=2", *graphs).fit()   # (a capturable Adam needs a GPU)
    assert len(marks) == 2                             # one graph generation per training step


def test_diagnostics_of_a_model_without_ladder_levels_draws_without_warnings(tmp_path):
    """A plugin's plain module logs gradient norms but no per-level RMS: the panel says so, no empty legend."""
    import json
    import warnings

    from rladder.core.viz import diagnostics

    rows = [{"step": s, "split": "train", "grad_norm": 2.0, "grad_norm_max": 3.0, "clipped": 0.5,
             "grad_norm/other": 2.0} for s in (10, 20)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = diagnostics(tmp_path)
    assert out is not None and out.stat().st_size > 1000

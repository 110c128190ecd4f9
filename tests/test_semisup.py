"""Semi-supervised learning: balanced label subsets, mixed batches, denoising and mean-teacher tasks."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rladder.core import checkpoint
from rladder.core.cli import cli
from rladder.core.config import load_raw, resolve
from rladder.core.labels import LabelPlan, balanced_subset
from rladder.core.train import Trainer
from rladder.plugins.memory_loader import MemoryLoader, MemoryOptions
from rladder.registry import ConfigError, OptionError, get_registry

TINY = pathlib.Path(__file__).resolve().parent / "configs" / "tiny_omm.toml"
OVERLAY = """
seed = 2
[data]
train = 200
val = 40
test = 40
[labels]
count = 40
fraction = 0.25
[train]
steps = 6
log_every = 3
eval_every = 3
checkpoint_every = 3
"""


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "semi.toml"
    path.write_text(OVERLAY)
    return [TINY, path]


def test_balanced_subset_is_deterministic_and_balanced():
    y = np.repeat(np.arange(10), 50)
    a = balanced_subset(y, 100, 10, seed=3)
    assert np.array_equal(a, balanced_subset(y, 100, 10, seed=3)) and not np.array_equal(a, balanced_subset(y, 100, 10, 4))
    assert np.bincount(y[a]).tolist() == [10] * 10 and len(set(a.tolist())) == 100
    assert np.bincount(y[balanced_subset(y, 23, 10, 0)]).tolist() == [3, 3, 3] + [2] * 7
    with pytest.raises(ConfigError, match="labels.count = 600 is larger than the 500 training samples"):
        balanced_subset(y, 600, 10, 0)
    skewed = np.concatenate([np.zeros(20, np.int64), np.repeat(np.arange(1, 10), 50)])
    with pytest.raises(ConfigError, match="needs 30 labelled samples of class 0, but the training split has only 20"):
        balanced_subset(skewed, 300, 10, 0)


class FakeData:
    def __init__(self, n):
        self.x = np.arange(n, dtype=np.float32)[:, None]

    def arrays(self, split):
        return {"x": self.x, "y": np.zeros(len(self.x), np.int64)}

    def to_batch(self, stored):
        return dict(stored)


def test_batches_mix_labelled_and_unlabelled_and_ranks_split_them():
    data, plan = FakeData(100), LabelPlan(np.arange(0, 100, 10), 0.25, True)
    one = MemoryLoader(MemoryOptions(), dataset=data, split="train", batch_size=8, train=True, seed=1, labels=plan)
    batches = [b for _, b in zip(range(30), one)]
    for b in batches:
        assert b["label_mask"].tolist() == [True] * 2 + [False] * 6
        ids = b["x"][:, 0].long()
        assert (ids[:2] % 10 == 0).all() and (ids[2:] % 10 != 0).all()
    ranks = [MemoryLoader(MemoryOptions(), dataset=data, split="train", batch_size=8, train=True, seed=1,
                          labels=plan, rank=r, world=2) for r in range(2)]
    for b, (r0, r1) in zip(batches, zip(*ranks)):
        assert sorted(torch.cat([r0["x"], r1["x"]])[:, 0].tolist()) == sorted(b["x"][:, 0].tolist())
        assert r0["label_mask"].sum() == r1["label_mask"].sum() == 1
    only = MemoryLoader(MemoryOptions(), dataset=data, split="train", batch_size=5, train=True, seed=1,
                        labels=LabelPlan(np.arange(0, 100, 10), 0.25, False))
    first = next(iter(only))
    assert (first["x"][:, 0].long() % 10 == 0).all() and first["label_mask"].all()


def test_labels_are_saved_with_the_run_and_resume_uses_them(cfg_file, tmp_path, make_trainer):
    t = make_trainer(cfg_file, tmp_path / "run")
    t.fit()
    saved = json.loads((tmp_path / "run" / "labels.json").read_text())
    assert saved["count"] == 40 and len(saved["labeled"]) == 40
    y = t.run.dataset.arrays("train")["y"]
    assert np.bincount(y[saved["labeled"]], minlength=10).tolist() == [4] * 10
    with pytest.raises(ConfigError, match="lists another labelled subset"):
        make_trainer(cfg_file, tmp_path / "run", "labels.seed=9", resume=True)


@pytest.mark.parametrize("sets, error, fragment", [
    (["labels.count=5000"], ConfigError, "labels.count = 5000 is larger than the 200 training samples"),
    (["labels.fraction=0"], ConfigError, "labels.fraction = 0 puts no labelled sample in any batch"),
    (["labels.fraction=1.5"], OptionError, r"labels.fraction: invalid value .*'fraction' must lie in \[0, 1\]"),
    (["tasks.mt.name=mean_teacher", "tasks.mt.decay=1.0"], OptionError,
     "tasks.mt.decay: invalid value .*strictly between 0 and 1"),
    (["tasks.mt.name=mean_teacher", "tasks.mt.rampup_decay=0"], OptionError, "rampup_decay"),
    (["tasks.den.name=denoise", "model.name=omm_rladder"], ConfigError, "tasks.den"),
])
def test_bad_semi_supervised_settings_fail_before_training(cfg_file, tmp_path, sets, error, fragment, make_trainer):
    with pytest.raises(error, match=fragment):
        make_trainer(cfg_file, tmp_path / "run", *sets)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_denoising_on_the_omm_rladder(cfg_file, tmp_path, make_trainer):
    t = make_trainer(cfg_file, tmp_path / "run", "tasks.den.name=denoise", "model.recon_head=true",
                     "tasks.den.level_weights=[0.0, 0.1]", "train.input_noise=0.2", "train.steps=2")
    t.fit()
    assert t.step == 2 and "heads.recon" in t.keep and "decoder.1" in t.keep


def test_denoising_needs_noise_and_a_head(cfg_file, tmp_path, make_trainer):
    with pytest.raises(ConfigError, match="reads heads.recon, which the model does not produce"):
        make_trainer(cfg_file, tmp_path / "a", "tasks.den.name=denoise", "train.input_noise=0.2")
    with pytest.raises(ConfigError, match="tasks.den needs a corrupted input: set train.input_noise > 0"):
        make_trainer(cfg_file, tmp_path / "b", "tasks.den.name=denoise", "tasks.den.head=", "tasks.den.level_weights=[1.0]")


def test_denoising_costs_on_a_generic_ladder(tmp_path):
    path = tmp_path / "den.toml"
    path.write_text("""
[data]
name = "synthetic"
step_shape = [1, 8, 8]
train = 32
[model]
name = "ladder"
levels = [ { encoder = { name = "input" }, decoder = { name = "vanilla" } },
           { encoder = { name = "conv_lstm", channels = 4 }, decoder = { name = "vanilla" } },
           { encoder = { name = "lstm", units = 8 }, decoder = { name = "vanilla" } } ]
heads = [ { name = "recon", source = "decoder.0", out = "input" } ]
[tasks.den]
name = "denoise"
level_weights = [0.0, 1.0, 0.1]
[train]
steps = 4
batch_size = 8
input_noise = 0.3
eval_every = 2
""")
    t = Trainer(resolve(load_raw([path])), tmp_path / "run", progress=False, log=lambda m: None)
    batch = next(iter(t.train_loader))
    from rladder.core.objective import corrupt, model_outputs, prepare
    batch = prepare(t.tasks, t.model, corrupt(batch, 0.3))
    assert not torch.equal(batch["x"], batch["x_uncorrupted"])
    clean = model_outputs(t.model, {"x": batch["x_uncorrupted"]}, t.run.spec)
    torch.testing.assert_close(batch["den/clean.encoder.1"], clean["encoder.1"])
    out = model_outputs(t.model, batch, t.run.spec)
    loss = t.tasks["den"].loss(out, batch)
    expected = ((torch.sigmoid(out["heads.recon"]) - batch["x_uncorrupted"]) ** 2).mean()
    for l, w in ((1, 1.0), (2, 0.1)):
        e, d = clean[f"encoder.{l}"], out[f"decoder.{l}"]
        dims = [i for i in range(e.dim()) if i != 2]
        sd = e.std(dims, keepdim=True) + 1e-5          # (d - mu)/sd - (e - mu)/sd = (d - e)/sd
        expected = expected + w * (((d - e) / sd) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    t.fit()
    assert t.step == 4


def test_mean_teacher_ema_checkpoint_resume_and_teacher_evaluation(cfg_file, tmp_path, make_trainer, interrupt):
    sets = ["tasks.mt.name=mean_teacher", "tasks.mt.rampup_steps=4", "tasks.mt.teacher_noise=0.1",
            "train.input_noise=0.1"]
    whole = make_trainer(cfg_file, tmp_path / "whole", *sets)
    student0 = {k: v.clone() for k, v in whole.model.state_dict().items()}
    teacher0 = whole.tasks["mt"].teacher.state_dict()
    assert all(torch.equal(student0[k], teacher0[k]) for k in student0)
    whole.fit()
    mt = whole.tasks["mt"]
    assert int(mt.step) == 6 and mt.ramp() == 1.0
    student, teacher = whole.model.state_dict(), mt.teacher.state_dict()
    moved = [k for k in student if student[k].is_floating_point() and not torch.equal(student[k], teacher[k])]
    assert moved, "the teacher should lag behind the student"
    assert all(not p.requires_grad for p in mt.teacher.parameters())
    state = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")
    assert any(k.startswith("mt.teacher.") for k in state["tasks"])
    records = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"][-1]
    assert "mt/teacher/classify/error" in val and "classify/error" in val

    part = make_trainer(cfg_file, tmp_path / "part", *sets)
    interrupt(part, 3)
    with pytest.raises(Exception, match="interrupted at step 3"):
        part.fit()
    resumed = make_trainer(cfg_file, tmp_path / "part", *sets, resume=True)
    resumed.fit()
    for k, v in mt.teacher.state_dict().items():
        assert torch.equal(v, resumed.tasks["mt"].teacher.state_dict()[k]), k
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "whole"), "--json"])
    metrics = json.loads(result.output)["metrics"]
    assert "mt/teacher/classify/error" in metrics and "classify/error" in metrics


def test_mean_teacher_ramp_and_ema_formula():
    reg = get_registry()
    from rladder.core import DataSpec
    from rladder.core.assemble import build_ladder, LadderSpec
    from rladder.registry import structure
    spec = DataSpec("vector", (3,), 2, {"x": "", "y": ""}, num_classes=2)
    model = build_ladder(structure(LadderSpec, {"levels": [{"encoder": {"name": "lstm", "units": 4}}],
                                                "heads": [{"name": "class", "source": "encoder.0",
                                                           "kind": "classifier", "out": "classes"}],
                                                "decoder": False}), spec)
    mt = reg.build("task", {"name": "mean_teacher", "rampup_steps": 10, "rampup_decay": 0.5, "decay": 0.9},
                   spec=spec, label="mt")
    mt.bind(model)
    assert mt.ramp() == pytest.approx(np.exp(-5.0))
    t0 = [p.clone() for p in mt.teacher.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    mt.after_optimizer_step(model, 1)          # alpha = min(1 - 1/2, 0.5) = 0.5
    for t_old, t_new, s in zip(t0, mt.teacher.parameters(), model.parameters()):
        torch.testing.assert_close(t_new, 0.5 * t_old + 0.5 * s)
    mt.after_optimizer_step(model, 20)         # after the ramp-up: alpha = min(1 - 1/21, 0.9) = 0.9
    assert mt.ramp() == 1.0


def test_semi_supervised_training_from_shards(cfg_file, tmp_path, make_trainer):
    data = tmp_path / "data.toml"
    data.write_text('[data]\nname = "occluded_mnist"\ntrain = 200\nval = 40\ntest = 40\n')
    out = CliRunner().invoke(cli, ["data", "build", "occluded_mnist", "--config", str(data), "--out",
                                   str(tmp_path / "shards"), "--shard-size", "50"])
    assert out.exit_code == 0, out.output
    t = make_trainer(cfg_file, tmp_path / "run", "loader.name=webdataset", f"loader.shards={tmp_path / 'shards'}",
                     "loader.mode=ordered")
    first = next(iter(t.train_loader))
    assert first["label_mask"].tolist() == [True] * 2 + [False] * 6
    t.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [3, 6]
    assert all(np.isfinite(r["loss"]) for r in records)
    assert len(json.loads((tmp_path / "run" / "labels.json").read_text())["labeled"]) == 40

"""The maintainer scripts keep working: the GPU check's code path, run on CPU with tiny sizes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:gpu -->\nold figures\n<!-- /bench:gpu -->\n\nkept\n")
    args = ["--device", "cpu", "--tiny", "--steps", "4", "--compile-backend", "aot_eager", "--write", str(doc)]
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), *args], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for variant in ("eager fp32", "eager bf16", "captured bf16 (compiled step, CUDA graphs)",
                    "eager bf16, WebDataset shards (4 workers, pinned)"):
        assert f"| {variant} |" in out.stdout
    assert "Captured step against the eager bf16 step:" in out.stdout
    assert "max_minutes run: train.max_minutes = 0.05 stopped at step" in out.stdout
    assert "drew curves.png, diagnostics.png, predictions.png" in out.stdout
    text = doc.read_text()        # the section is replaced, under the command that wrote it
    assert "old figures" not in text and text.endswith("<!-- /bench:gpu -->\n\nkept\n")
    assert f"Command: `python tools/gpu_check.py {' '.join(args)}`" in text


def test_gpu_check_reports_a_failing_variant_and_still_runs_the_others(tmp_path):
    """On the H200 the captured variant crashed and took the eager figures with it: now it is a table row."""
    args = ["--device", "cpu", "--tiny", "--steps", "3", "--compile-backend", "no_such_backend", "--write",
            str(tmp_path / "bench.md")]
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), *args], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode != 0 and "1 variant(s) failed: captured bf16 (compiled step, CUDA graphs)" in out.stderr
    assert "| captured bf16 (compiled step, CUDA graphs) | failed: " in out.stdout
    assert "| eager bf16, WebDataset shards (4 workers, pinned) | " in out.stdout
    assert "not compared (a variant failed)" in out.stdout


def test_gpu_check_refuses_without_a_gpu():
    import torch
    if torch.cuda.is_available():
        return
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py")], capture_output=True, text=True)
    assert out.returncode != 0 and "needs a GPU" in out.stderr


def test_ablate_links_closes_all_gates_then_each_level(tmp_path, make_trainer):
    sys.path.insert(0, str(ROOT / "tools"))
    import ablate_links
    from rladder.core.evaluation import evaluate_run

    run = tmp_path / "run"
    make_trainer(ROOT / "tests" / "configs" / "tiny_omm.toml", run, "train.steps=6", "train.eval_every=6",
                 "train.lr=3e-2").fit()
    rows = ablate_links.ablate(run, "test", "last")
    levels = [r for r in rows if r.startswith("level ")]
    assert list(rows)[:2] == ["as trained", "all links closed"] and len(levels) >= 2
    assert set(rows["as trained"]) == {"predict/prediction_error", "classify/error"}
    # "as trained" is the ordinary evaluation; closing every gate changes what the model predicts
    assert rows["as trained"]["predict/prediction_error"] == \
        evaluate_run(run, "test", "last")["metrics"]["predict/prediction_error"]
    assert rows["all links closed"]["predict/prediction_error"] != rows["as trained"]["predict/prediction_error"]

    plain = tmp_path / "plain"           # no gates: a clear refusal, not a table of identical rows
    make_trainer(ROOT / "tests" / "configs" / "tiny_omm.toml", plain, "train.steps=1", "model.links.gate=none").fit()
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "ablate_links.py"), str(plain), "--checkpoint", "last"],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "no learned link gates" in out.stderr


def test_video_grouping_check_scores_a_run_as_its_evaluation_does(tmp_path, make_trainer):
    """The tool's per-frame AMI of the run's grouping is the run's own `ami/ami`; fixed halves come beside it;
    a run that is no video grouping gets a clear refusal."""
    sys.path.insert(0, str(ROOT / "tools"))
    import video_grouping_check
    from rladder.core.evaluation import evaluate_run

    run = tmp_path / "run"
    make_trainer(ROOT / "configs" / "grouping" / "rtagger_moving_mnist.toml", run, "data.train=16", "data.val=8",
                 "data.test=8", "data.frames=4", "train.steps=2", "train.batch_size=8", "train.eval_every=2",
                 "train.checkpoint_every=2", "train.threads=1").fit()
    title, table = video_grouping_check.check(run, "test", "last", sequences=8)
    assert "8 test sequences of 4 frames" in title
    assert list(table) == ["the run's", "left / right halves", "top / bottom halves"]
    metrics = evaluate_run(run, "test", "last")["metrics"]
    assert abs(table["the run's"]["ami"] - metrics["ami/ami"]) < 1e-6
    assert abs(table["left / right halves"]["ami"] - metrics["ami/ami_halves"]) < 1e-6
    assert abs(table["the run's"]["sequence_ami"] - metrics["ami/ami_sequence"]) < 1e-6
    assert all(1 / 3 <= s["identity"] <= 1 for s in table.values())

    omm = tmp_path / "omm"
    make_trainer(ROOT / "tests" / "configs" / "tiny_omm.toml", omm, "train.steps=1").fit()
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "video_grouping_check.py"), str(omm)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "is not a video grouping run" in out.stderr

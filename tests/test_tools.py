"""The maintainer scripts keep working: the GPU check's code path, run on CPU with tiny sizes."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:gpu -->\nold figures\n<!-- /bench:gpu -->\n\nkept\n")
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--device", "cpu", "--tiny",
                          "--steps", "2", "--batch", "8", "--write", str(doc)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    for variant in ("fp32, eager", "bf16 autocast", "bf16 + channels_last", "bf16, webdataset (4 workers, pinned)"):
        assert f"| {variant} |" in out.stdout
    text = doc.read_text()        # the section is replaced, under the command that wrote it
    assert "old figures" not in text and text.endswith("<!-- /bench:gpu -->\n\nkept\n")
    assert f"Command: `python tools/gpu_check.py --device cpu --tiny --steps 2 --batch 8 --write {doc}`" in text
    assert "| bf16 autocast |" in text


def test_gpu_check_refuses_without_a_gpu():
    import torch
    if torch.cuda.is_available():
        return
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_check.py")], capture_output=True, text=True)
    assert out.returncode != 0 and "needs a GPU" in out.stderr

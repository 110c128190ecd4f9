"""The music commands end to end: train a tiny run, `rladder viz` (piano roll, probabilities, NLL per step),
`rladder generate` (MIDI + picture, from a piece or a MIDI file), `rladder reproduce table3 --budget smoke`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rladder.core.cli import cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "music" / "chorales_rladder.toml")
SMOKE = ["data.max_pieces=3", "data.max_steps=24", "model.channels=[2,2,2,2]", "model.top=8", "loader.chunk=8",
         "train.steps=2", "train.batch_size=2", "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2",
         "train.threads=1", "train.warmup_steps=0"]


@pytest.fixture(scope="module")
def music_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("music") / "run"
    args = ["train", CONFIG, "--run-dir", str(run_dir), "--no-pictures"] + [a for s in SMOKE for a in ("--set", s)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return run_dir


def test_viz_draws_the_piano_roll_the_probabilities_and_the_nll_per_step(music_run):
    result = CliRunner().invoke(cli, ["viz", str(music_run)])
    assert result.exit_code == 0, result.output
    assert "piano_roll.png" in result.output and (music_run / "piano_roll.png").stat().st_size > 10_000


def test_generate_continues_a_piece_and_writes_midi_and_a_picture(music_run, tmp_path):
    mido = pytest.importorskip("mido")
    out = tmp_path / "gen" / "continued.mid"
    args = ["generate", str(music_run), "--primer", "test:0", "--primer-steps", "8", "--steps", "12", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert f"written: {out}" in result.output and out.with_suffix(".png").stat().st_size > 5_000
    mid = mido.MidiFile(out)                                 # a standard parser reads it
    assert mid.type == 0 and any(m.type == "note_on" for m in mid)
    assert mid.length <= (8 + 12) * 0.3 + 1e-6               # 8 primer steps + 12, eighth notes at 100 bpm


def test_generate_is_reproducible_and_takes_a_midi_primer(music_run, tmp_path):
    pytest.importorskip("mido")
    from rladder.plugins.pianoroll import read_midi, write_midi

    primer = np.zeros((6, 88), bool)
    primer[:, [39, 43, 46]] = True                           # a held C major chord
    write_midi(primer, tmp_path / "primer.mid")
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.mid"
        result = CliRunner().invoke(cli, ["generate", str(music_run), "--primer", str(tmp_path / "primer.mid"),
                                          "--steps", "10", "--seed", "3", "--out", str(out)])
        assert result.exit_code == 0, result.output
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    roll = read_midi(tmp_path / "a.mid")
    assert np.array_equal(roll[:6], primer)                  # the primer comes back first


def test_generate_explains_a_primer_it_cannot_read(music_run, tmp_path):
    result = CliRunner().invoke(cli, ["generate", str(music_run), "--primer", "no-such-piece", "--out",
                                      str(tmp_path / "x.mid")])
    assert result.exit_code == 2 and "SPLIT:INDEX such as test:0" in result.output


def test_reproduce_table3_smoke(tmp_path):
    out = tmp_path / "t3"
    result = CliRunner().invoke(cli, ["reproduce", "table3", "--budget", "smoke", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = (out / "results.md").read_text()
    for row in ("| RLadder |", "| RLadder w/o decoder (hierarchical RNN) |", "| RLadder w/o decoder-to-encoder conn. |",
                "| LSTM (marginal) |", "| Every note at probability 0.5 (88 ln 2) |"):
        assert row in table
    assert "5.64 ± 0.02" in table and "6.866" in table and "BALSTM" in table
    assert "Piano-midi.de†" in table and "† Data not available offline: supply the BL2012 files" in table
    assert "not the BL2012 JSB Chorales" in table and "failed" not in table
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert set(rows) == {"rladder", "rladder_no_decoder", "rladder_no_feedback", "lstm", "baselines"}
    assert rows["baselines"][0]["predict/uniform_nll"] == pytest.approx(60.997, abs=1e-3)
    assert 0 < rows["baselines"][0]["predict/prior_nll"] < 30 and rows["rladder"][0]["predict/nll"] > 0


def test_data_errors_are_one_paragraph_with_the_documented_exit_codes(tmp_path, monkeypatch):
    monkeypatch.delenv("RLADDER_BL2012", raising=False)
    missing = CliRunner().invoke(cli, ["check", CONFIG, "--set", "data.name=bl2012"])
    assert missing.exit_code == 2 and "RLADDER_BL2012" in missing.output and "Traceback" not in missing.output
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
        (tmp_path / split / "a.mid").write_bytes(b"RIFF....WAVEfmt ")
    bad = CliRunner().invoke(cli, ["check", CONFIG, "--set", "data.name=midi_folder", "--set", f"data.path='{tmp_path}'"])
    assert bad.exit_code == 1 and "a.mid is not a MIDI file" in bad.output and "skip_bad" in bad.output
    assert len([ln for ln in bad.output.splitlines() if ln.strip()]) == 1

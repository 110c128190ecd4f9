"""Polyphonic music (paper section 3.2): piano-roll datasets, the chunked loader (truncated BPTT),
the 18-layer music RLadder and its ablations, the NLL and its trivial baselines."""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
from importlib import resources

import numpy as np
import pytest
import torch

from rladder.core import DataSpec
from rladder.registry import ConfigError, DataError, get_registry

TINY = {"channels": [2, 2, 2, 2], "top": 8}


def dataset(**options):
    return get_registry().build("dataset", {"name": "bach_chorales", **options})


def chunked(ds, split="test", batch_size=2, chunk=7, train=False, **kw):
    return get_registry().build("loader", {"name": "chunked", "chunk": chunk}, dataset=ds, split=split,
                                batch_size=batch_size, train=train, **kw)


# ------------------------------------------------------------------------------ data
def test_the_chorales_fixture_matches_its_checksum_and_splits_by_riemenschneider_number():
    from rladder.plugins.music_data import FIXTURE_SHA256, read_fixture

    packed = resources.files("rladder.plugins").joinpath("fixtures", "bach_chorales.json.gz").read_bytes()
    assert len(packed) < 200_000
    assert hashlib.sha256(gzip.decompress(packed)).hexdigest() == FIXTURE_SHA256
    pieces = read_fixture()["pieces"]
    assert len(pieces) == 351 and sum(len(p["steps"]) for p in pieces) == 37522
    ds = dataset()
    assert {s: len(ds.pieces[s]) for s in ("train", "val", "test")} == {"train": 208, "val": 72, "test": 71}
    test_names = {p["name"] for p in pieces if p["number"] % 5 == 0}
    assert {n for n, _ in ds.pieces["test"]} == test_names
    roll = ds.arrays("train")
    assert roll["roll"].dtype == np.uint8 and roll["roll"].shape[2] == 11 and int(roll["length"].sum()) == 22558


def test_a_damaged_fixture_is_a_clear_error():
    from rladder.plugins.music_data import read_fixture

    with pytest.raises(DataError, match="damaged.*make_chorales.py"):
        read_fixture(gzip.compress(b'{"pieces": []}'))


def test_a_batch_predicts_every_step_of_a_piece_from_silence_and_masks_the_padding():
    ds = dataset(max_pieces=3)
    stored = {k: torch.from_numpy(v) for k, v in ds.arrays("test").items()}
    batch = ds.to_batch(stored)
    lengths = stored["length"]
    assert batch["x"].shape == (3, int(lengths.max()), 1, 88)
    assert batch["x"][:, 0].sum() == 0                                     # step 0's input is silence
    assert torch.equal(batch["x"][:, 1:], batch["x_next"][:, :-1])        # the target is the next input
    assert torch.equal(batch["step_mask"].sum(1), lengths)
    first = ds.pieces["test"][0][1]
    assert torch.equal(batch["x_next"][0, :len(first), 0], torch.from_numpy(first).float())
    train = np.concatenate([r for _, r in ds.pieces["train"]])             # add-one smoothed key frequencies
    expected = torch.from_numpy((train.sum(0) + 1) / (len(train) + 2)).float()
    assert batch["x_prior"].shape == (3, 1, 1, 88) and torch.allclose(batch["x_prior"][2, 0, 0], expected)


def test_transposition_adds_shifted_copies_with_the_same_notes():
    from rladder.plugins.pianoroll import transpose

    plain, shifted = dataset(max_pieces=4), dataset(max_pieces=4, transpose=2)
    base, more = plain.arrays("train"), shifted.arrays("train")
    assert len(more["roll"]) == 5 * len(base["roll"])                     # shifts -2, -1, +1, +2 all fit
    roll = plain.pieces["train"][0][1]
    up = transpose(roll, 2)
    assert up.sum() == roll.sum() and np.array_equal(np.flatnonzero(up.any(0)), np.flatnonzero(roll.any(0)) + 2)
    assert transpose(roll, 60) is None                                     # would leave the keyboard
    from rladder.plugins.pianoroll import unpack
    copies = unpack(torch.from_numpy(more["roll"])).sum((1, 2))
    assert torch.equal(copies.view(5, -1), copies[:4].repeat(5, 1))       # every copy keeps the note count
    assert shifted.arrays("test")["roll"].shape == plain.arrays("test")["roll"].shape   # training split only


def bl2012_pickle(path, data, protocol=2):
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def test_bl2012_reads_a_pickle_of_lists_and_ints_and_checks_its_sha256(tmp_path):
    data = {"train": [[[60, 64], [60, 64], [62]], [[48]]], "valid": [[[50, 53], []]], "test": [[[21], [108], []]]}
    path = bl2012_pickle(tmp_path / "JSB Chorales.pickle", data)
    ds = get_registry().build("dataset", {"name": "bl2012", "path": str(tmp_path)})
    assert [len(ds.pieces[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    batch = ds.to_batch({k: torch.from_numpy(v) for k, v in ds.arrays("test").items()})
    assert torch.nonzero(batch["x_next"][0, :2, 0]).tolist() == [[0, 0], [1, 87]]   # MIDI 21 and 108
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    get_registry().build("dataset", {"name": "bl2012", "path": str(path), "sha256": digest})
    with pytest.raises(DataError, match="sha256"):
        get_registry().build("dataset", {"name": "bl2012", "path": str(path), "sha256": "0" * 64})


class Exploit:
    def __reduce__(self):
        import os
        return os.system, ("touch pwned",)


@pytest.mark.parametrize("bad, message", [
    ({"train": [[Exploit()]], "valid": [], "test": []}, "class posix.system"),
    ({"train": [np.array([[60]])], "valid": [], "test": []}, "class numpy"),
    ({"train": [[["C4"]]], "valid": [], "test": []}, "not a list of steps of MIDI pitches"),
    ({"train": [[[60.5]]], "valid": [], "test": []}, "not a list of steps"),
    ([1, 2, 3], "not a BL2012 pickle"),
])
def test_the_bl2012_unpickler_admits_only_lists_and_ints(tmp_path, monkeypatch, bad, message):
    from rladder.plugins.music_data import read_bl2012

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=message):
        read_bl2012(pickle.dumps(bad, protocol=2), "x.pickle")
    assert not (tmp_path / "pwned").exists()


def test_bl2012_without_the_files_says_where_to_put_them(monkeypatch):
    monkeypatch.delenv("RLADDER_BL2012", raising=False)
    with pytest.raises(ConfigError, match="RLADDER_BL2012.*bach_chorales"):
        get_registry().build("dataset", {"name": "bl2012", "set": "nottingham"})


def midi_files(folder, rolls):
    from rladder.plugins.pianoroll import write_midi

    folder.mkdir(parents=True, exist_ok=True)
    return [write_midi(r, folder / f"piece{i}.mid") for i, r in enumerate(rolls)]


def random_roll(rng, steps=20):
    roll = np.zeros((steps, 88), bool)
    for voice in range(3):
        t = 0
        while t < steps:
            n = int(rng.integers(1, 4))
            roll[t:t + n, 30 + 7 * voice + int(rng.integers(0, 6))] = True
            t += n + int(rng.integers(0, 2))
    return roll


def test_midi_written_by_rladder_reads_back_with_mido_and_gives_the_same_roll(tmp_path):
    mido = pytest.importorskip("mido")
    from rladder.plugins.pianoroll import read_midi, write_midi

    roll = random_roll(np.random.default_rng(0), 40)
    path = write_midi(roll, tmp_path / "x.mid", bpm=120)
    mid = mido.MidiFile(path)                                              # a standard parser
    assert mid.type == 0 and len(mid.tracks) == 1 and mid.ticks_per_beat == 480
    onsets = int((np.diff(np.pad(roll, ((1, 0), (0, 0))).astype(int), axis=0) == 1).sum())
    assert sum(1 for m in mid if m.type == "note_on" and m.velocity > 0) == onsets
    last_off = max(i for i in range(len(roll)) if roll[i].any()) + 1
    assert mid.length == pytest.approx(last_off * 0.25)                    # eighth notes at 120 bpm
    assert np.array_equal(read_midi(path), roll[:last_off])


def test_midi_folder_a_file_that_is_not_midi_is_an_error_or_with_skip_bad_a_warning(tmp_path, capsys):
    pytest.importorskip("mido")
    rng = np.random.default_rng(1)
    for split in ("train", "val", "test"):
        midi_files(tmp_path / split, [random_roll(rng) for _ in range(2)])
    (tmp_path / "train" / "notes.txt").write_text("not music")
    with pytest.raises(DataError, match=r"notes.txt is not a MIDI file.*skip_bad"):
        get_registry().build("dataset", {"name": "midi_folder", "path": str(tmp_path)})
    ds = get_registry().build("dataset", {"name": "midi_folder", "path": str(tmp_path), "skip_bad": True})
    assert "warning: skipping" in capsys.readouterr().err
    assert [len(ds.pieces[s]) for s in ("train", "val", "test")] == [2, 2, 2]


def test_midi_folder_without_subfolders_splits_by_position(tmp_path):
    pytest.importorskip("mido")
    rng = np.random.default_rng(2)
    midi_files(tmp_path, [random_roll(rng) for _ in range(10)])
    ds = get_registry().build("dataset", {"name": "midi_folder", "path": str(tmp_path)})
    assert [len(ds.pieces[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert [n for n, _ in ds.pieces["test"]] == ["piece4.mid", "piece9.mid"]   # positions 5 and 10


# ------------------------------------------------------------------------------ chunked loader
def windows(loader):
    """(piece, first step, steps) of every slot of every evaluation batch."""
    out = []
    for seq, start, _ in loader.schedule:
        for p, s in zip(seq.tolist(), start.tolist()):
            if p >= 0:
                out.append((p, s, min(loader.chunk, int(loader.lengths[p]) - s)))
    return out


@pytest.mark.parametrize("world", [1, 2])
def test_chunked_evaluation_visits_every_step_of_every_piece_exactly_once(world):
    ds = dataset(max_pieces=9)
    lengths = ds.arrays("test")["length"]
    seen = {p: [] for p in range(len(lengths))}
    masked = 0
    for rank in range(world):
        loader = chunked(ds, batch_size=4, chunk=16, rank=rank, world=world)
        for p, s, n in windows(loader):
            seen[p] += range(s, s + n)
        masked += sum(int(b["step_mask"].sum()) for b in loader)
    assert all(sorted(steps) == list(range(lengths[p])) for p, steps in seen.items())
    assert masked == int(lengths.sum())


def test_chunked_evaluation_gives_exactly_the_nll_of_whole_pieces():
    from rladder.core.evaluation import evaluate
    from rladder.core.assemble import build_model, build_tasks

    torch.manual_seed(0)
    ds = dataset(max_pieces=3, max_steps=40)
    model = build_model({"name": "music_rladder", **TINY}, ds.spec)
    tasks = torch.nn.ModuleDict(build_tasks({"predict": {"name": "next_step", "head": "notes", "report": "nll"}},
                                            ds.spec, model))
    whole = get_registry().build("loader", {"name": "memory"}, dataset=ds, split="test", batch_size=8, train=False)
    a = evaluate(model, tasks, ds.spec, whole, torch.device("cpu"))
    b = evaluate(model, tasks, ds.spec, chunked(ds, batch_size=2, chunk=7), torch.device("cpu"))
    assert a["predict/nll"] == pytest.approx(b["predict/nll"], rel=1e-5)
    assert a["predict/prior_nll"] == pytest.approx(b["predict/prior_nll"], rel=1e-6)
    assert a["predict/uniform_nll"] == pytest.approx(88 * math.log(2))


def test_chunked_training_continues_each_slot_and_resumes_exactly():
    ds = dataset(max_pieces=6)
    loader = chunked(ds, split="train", batch_size=3, chunk=20, train=True, seed=5)
    it = iter(loader)
    first, second = next(it), next(it)
    assert not first["carry"].any() and second["carry"].all()            # the pieces are longer than 20 steps
    assert torch.equal(second["x"][:, 0], first["x_next"][:, -1])          # the next chunk starts where one ended
    state = loader.state_dict()
    expected = [next(it) for _ in range(6)]
    again = chunked(ds, split="train", batch_size=3, chunk=20, train=True, seed=5)
    again.load_state_dict(state)
    got = [b for _, b in zip(range(6), iter(again))]
    assert any(not b["carry"].all() for b in expected)                     # a slot started a new piece
    for e, g in zip(expected, got):
        assert all(torch.equal(e[k], g[k]) for k in ("x", "x_next", "step_mask", "carry"))


def test_the_chunked_loader_refuses_data_of_one_length():
    ds = get_registry().build("dataset", {"name": "synthetic", "modality": "sequence", "step_shape": [1, 8]})
    with pytest.raises(ConfigError, match="use loader 'memory'"):
        chunked(ds, split="train", train=True)


# ------------------------------------------------------------------------------ models and task
def test_the_music_rladder_has_the_18_layers_of_spec_4_2():
    from rladder.core.assemble import build_model

    spec = DataSpec("sequence", (1, 88), 8, {"x": ""})
    model = build_model({"name": "music_rladder", "channels": [4, 6, 8, 10], "top": 12}, spec)
    cells = [type(level.encoder).__name__ for level in model.levels]
    assert len(cells) == 18 and cells.count("ConvLSTMCell") == 5 and cells.count("ConvCell") == 12
    assert cells[-1] == "LSTMCell"
    widths = {tuple(s) for s in model.shapes[:-1]}
    assert widths == {(4, 88), (6, 44), (8, 22), (10, 11)} and model.shapes[-1] == (12,)
    x = (torch.rand(3, 5, 1, 88) < 0.1).float()
    out, _ = model(x, keep=["heads.notes"])
    assert out["heads.notes"].shape == (3, 5, 1, 88)
    assert torch.allclose(model.heads["notes"].layer.bias, torch.tensor(-3.0))


@pytest.mark.parametrize("name, decoder", [("music_rladder_no_feedback", True), ("music_rladder_no_decoder", False),
                                           ("music_lstm", False)])
def test_the_ablations_and_the_lstm_predict_88_notes_and_continue_across_chunks(name, decoder):
    from rladder.core.assemble import build_model

    torch.manual_seed(0)
    model = build_model({"name": name, **TINY}, DataSpec("sequence", (1, 88), 8, {"x": ""})).eval()
    assert any(n.startswith("decoder.") for n in model.output_names()) == decoder
    x = (torch.rand(2, 6, 1, 88) < 0.1).float()
    whole, _ = model(x, keep=["heads.notes"])
    a, state = model(x[:, :4], keep=["heads.notes"])
    b, _ = model(x[:, 4:], state, keep=["heads.notes"])
    assert whole["heads.notes"].shape == (2, 6, 1, 88)
    assert torch.allclose(torch.cat([a["heads.notes"], b["heads.notes"]], 1), whole["heads.notes"], atol=1e-6)


def test_music_models_refuse_data_that_is_not_a_piano_roll():
    from rladder.core.assemble import build_model
    from rladder.registry import ContractError

    with pytest.raises(ContractError, match=r"piano-roll steps \(1, 88\)"):
        build_model({"name": "music_rladder"}, DataSpec("video", (1, 32, 32), 4, {"x": ""}))


def test_the_nll_and_its_baselines_in_nats_per_step():
    from rladder.core.assemble import build_tasks, build_model

    spec = DataSpec("sequence", (1, 88), 2, {"x": "", "x_next": "", "step_mask": "", "x_prior": ""})
    model = build_model({"name": "music_lstm", **TINY}, spec)
    task = build_tasks({"p": {"name": "next_step", "head": "notes", "report": "nll"}}, spec, model)["p"]
    target = torch.zeros(1, 2, 1, 88)
    target[0, 0, 0, :4] = 1
    logits = torch.full((1, 2, 1, 88), math.log(0.1 / 0.9))               # p = 0.1 for every note
    prior = torch.full((1, 1, 1, 88), 0.5)
    batch = {"x": target, "x_next": target, "step_mask": torch.tensor([[True, False]]), "x_prior": prior}
    task.update_metrics({"heads.notes": logits}, batch)
    m = task.compute_metrics()
    assert m["nll"] == pytest.approx(-(4 * math.log(0.1) + 84 * math.log(0.9)), rel=1e-5)   # the masked step left out
    assert m["prior_nll"] == pytest.approx(88 * math.log(2), rel=1e-5) == m["uniform_nll"]
    draws = task.sample_input({"next_frame": torch.full((2000, 1, 1, 88), 0.25)}, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {0.0, 1.0} and draws.mean().item() == pytest.approx(0.25, abs=0.01)

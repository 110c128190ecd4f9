"""WebDataset shards: build, verify, bit-exact round trip, bad shards, URLs, the loader's checks."""

from __future__ import annotations

import json
import shutil
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rladder.core import shards as S
from rladder.core.cli import cli
from rladder.core.labels import LabelPlan
from rladder.plugins.memory_loader import MemoryLoader, MemoryOptions
from rladder.plugins.wds_loader import WebDatasetLoader, WebDatasetOptions
from rladder.registry import ConfigError, DataError, get_registry

DATA = {"name": "occluded_mnist", "train": 96, "val": 24, "test": 40}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "omm"
    S.build(dict(DATA), out, shard_size=16, log=lambda m: None)
    return out


def dataset():
    reg = get_registry()
    table = reg.resolved_table("dataset", DATA)
    return reg.build("dataset", table), table


def loader(built, split="train", train=True, **opts):
    ds, table = dataset()
    args = {k: opts.pop(k) for k in ("labels", "seed") if k in opts}
    return WebDatasetLoader(WebDatasetOptions(shards=str(opts.pop("shards", built)), **opts), dataset=ds,
                            split=split, batch_size=opts.pop("batch_size", 8), train=train, data_config=table, **args)


def test_manifest_and_verify(built):
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["dataset"] == "occluded_mnist" and manifest["options"]["train"] == 96
    assert manifest["keys"] == ["clean", "recon", "y"] and manifest["rladder"]
    assert [s["samples"] for s in manifest["splits"]["train"]["shards"]] == [16] * 6
    assert manifest["splits"]["test"]["samples"] == 40 and len(manifest["splits"]["test"]["shards"]) == 3
    assert S.verify(built, log=lambda m: None)["splits"]["val"]["samples"] == 24


def test_builds_are_reproducible_and_never_overwrite(built, tmp_path):
    again = tmp_path / "again"
    S.build(dict(DATA), again, splits=["val"], shard_size=16, log=lambda m: None)
    for shard in json.loads((again / "manifest.json").read_text())["splits"]["val"]["shards"]:
        assert (again / shard["name"]).read_bytes() == (built / shard["name"]).read_bytes()
    with pytest.raises(ConfigError, match="already holds shards"):
        S.build(dict(DATA), again, shard_size=16, log=lambda m: None)


def test_interrupted_build_leaves_no_manifest(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = S._add

    def fail_later(*args):
        calls["n"] += 1
        if calls["n"] > 50:
            raise KeyboardInterrupt
        original(*args)

    monkeypatch.setattr(S, "_add", fail_later)
    with pytest.raises(KeyboardInterrupt):
        S.build(dict(DATA), tmp_path / "out", shard_size=16, log=lambda m: None)
    assert list((tmp_path / "out").iterdir()) == []


def test_round_trip_is_bit_exact(built):
    ds, _ = dataset()
    memory = iter(MemoryLoader(MemoryOptions(), dataset=ds, split="val", batch_size=8, train=False))
    sharded = iter(loader(built, "val", train=False))
    for a, b in zip(memory, sharded, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ordered = loader(built, mode="ordered")
    arrays = ds.arrays("train")
    first = next(iter(ordered))
    reference = ds.to_batch({k: torch.from_numpy(v[:8]) for k, v in arrays.items()})
    assert all(torch.equal(first[k], reference[k]) for k in reference)
    assert first["y"].dtype == torch.int64 and first["y"].shape == (8,)


def test_ordered_mode_splits_every_global_batch_across_processes(built):
    ds, table = dataset()
    whole = iter(loader(built, mode="ordered"))
    parts = [iter(WebDatasetLoader(WebDatasetOptions(shards=str(built), mode="ordered"), dataset=ds, split="train",
                                   batch_size=8, train=True, rank=r, world=2, data_config=table)) for r in range(2)]
    for _ in range(15):                       # beyond one epoch (12 batches)
        a, b0, b1 = next(whole), next(parts[0]), next(parts[1])
        assert torch.equal(torch.cat([b0["x"], b1["x"]]), a["x"])


def test_resampled_mode_runs_fixed_epochs_with_workers(built):
    ld = loader(built, shuffle_buffer=20, workers=2, steps_per_epoch=5)
    it = iter(ld)
    batches = [next(it) for _ in range(12)]
    assert all(b["x"].shape == (8, 5, 1, 32, 32) for b in batches) and ld.epoch == 2 and ld.position == 2


def test_too_few_shards_for_the_readers(built):
    with pytest.raises(ConfigError, match=r"has 3 test shard\(s\) for 1 process\(es\) x 4 worker\(s\) = 4 readers"):
        loader(built, "test", train=False, workers=4)


def test_other_data_options_than_the_shards(built):
    ds, table = dataset()
    with pytest.raises(ConfigError, match="built with other options than the config's"):
        WebDatasetLoader(WebDatasetOptions(shards=str(built)), dataset=ds, split="train", batch_size=8, train=True,
                         data_config={**table, "train": 97})


def test_truncated_and_corrupt_shards(built, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(built, bad)
    shard = bad / "train-000002.tar"
    shard.write_bytes(shard.read_bytes()[:30000])
    with pytest.raises(DataError, match="train-000002.tar: sha256 differs"):
        S.verify(bad, log=lambda m: None)
    with pytest.raises(DataError, match="train-000002.*truncated or corrupt"):
        for _ in loader(bad, mode="ordered", steps_per_epoch=12):
            pass
    ordered = loader(bad, mode="ordered", on_error="warn", steps_per_epoch=12)
    got = [b for _, b in zip(range(11), ordered)]
    assert len(got) == 11                       # the damaged shard's remainder is skipped, nothing hangs
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["splits"]["val"]["shards"][0]["samples"] += 1
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="val-000000.tar: 16 samples, the manifest says 17"):
        S.verify(bad, log=lambda m: None)


def cut_mid_member(shard, member=10):
    """Truncate a shard in the middle of one member's data (an interrupted copy or download)."""
    with tarfile.open(shard) as tar:
        info = tar.getmembers()[member]
    shard.write_bytes(shard.read_bytes()[:info.offset_data + info.size // 2])


@pytest.mark.parametrize("mode", ["ordered", "resampled"])
def test_a_shard_cut_mid_member_is_named_once_in_plain_words_and_warned_about_once(built, tmp_path, capsys, mode):
    bad = tmp_path / "bad"
    shutil.copytree(built, bad)
    shards = [bad / "train-000002.tar", bad / "train-000004.tar"]
    for shard in shards:
        cut_mid_member(shard)
    with pytest.raises(DataError) as err:
        for _ in loader(bad, mode=mode, steps_per_epoch=12):
            pass
    msg = str(err.value)
    assert len(err.value.args) == 1 and msg.startswith(f"shard {shards[0]} is truncated or corrupt (ReadError: "
                                                       f"unexpected end of data); run `rladder data verify`")
    assert msg.count(".tar") == 1 and "BufferedReader" not in msg and "(<" not in msg and "('" not in msg
    capsys.readouterr()
    batches = iter(loader(bad, mode=mode, on_error="warn", steps_per_epoch=12))
    for _ in range(60):                                  # five epochs and more: each bad shard read again and again
        next(batches)
    warnings = capsys.readouterr().err.splitlines()
    assert sorted(warnings) == [f"warning: shard {shard} is truncated or corrupt (ReadError: unexpected end of data); "
                                f"skipping the rest of it" for shard in shards]


def test_pipe_urls_work(built):
    ld = loader(built, "val", train=False, shards=f"pipe:cat {built}/{{}}")
    assert sum(len(b["y"]) for b in ld) == 24


@pytest.mark.skipif(shutil.which("curl") is None, reason="webdataset reads http(s) URLs through curl")
def test_http_urls_work(built):
    import functools
    import http.server
    import threading
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(built)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ld = loader(built, "val", train=False, shards=f"http://127.0.0.1:{server.server_port}")
        assert sum(len(b["y"]) for b in ld) == 24
    finally:
        server.shutdown()


def test_cli_build_verify_any_dataset(tmp_path):
    runner = CliRunner()
    out = tmp_path / "syn"
    result = runner.invoke(cli, ["data", "build", "synthetic", "--out", str(out), "--set", "train=20",
                                 "--set", "val=10", "--set", "test=10", "--shard-size", "8", "--split", "train"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["data", "verify", str(out)])
    assert result.exit_code == 0 and "ok: synthetic, 20 samples in 3 shards" in result.output
    bad = runner.invoke(cli, ["data", "build", "synthetic", "--out", str(tmp_path / "x"), "--set", "trian=3"])
    assert bad.exit_code == 2 and "unknown option 'trian'" in bad.output
    missing = runner.invoke(cli, ["data", "verify", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "has no manifest.json" in missing.output
    shard = out / "train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:-700])
    broken = runner.invoke(cli, ["data", "verify", str(out)])
    assert broken.exit_code == 1 and "train-000001.tar" in broken.output


def test_labelled_subset_with_shards_matches_the_memory_loader(built):
    """Semi-supervised batches from shards: the labelled share equals the in-memory loader's (same
    seeded order), the rest is the shard stream with the labelled samples left out."""
    ds, table = dataset()
    plan = LabelPlan(np.arange(3, 96, 9), 0.25, True)         # 11 labelled samples
    memory = iter(MemoryLoader(MemoryOptions(), dataset=ds, split="train", batch_size=8, train=True, seed=5,
                               labels=plan))
    sharded = loader(built, mode="ordered", labels=plan, seed=5)
    assert len(sharded) == (96 - 11) // 6
    stored = ds.arrays("train")
    rest = [i for i in range(96) if i not in set(plan.labeled.tolist())]
    it = iter(sharded)
    for step in range(20):                                    # beyond one epoch of both streams
        a, b = next(memory), next(it)
        assert b["label_mask"].tolist() == [True] * 2 + [False] * 6
        assert all(torch.equal(a[k][:2], b[k][:2]) for k in a if k != "label_mask")
        idx = rest[(step % len(sharded)) * 6:][:6]
        expect = ds.to_batch({k: torch.from_numpy(v[idx]) for k, v in stored.items()})
        assert all(torch.equal(expect[k], b[k][2:]) for k in expect)


def test_labelled_shards_across_processes_resume_and_labelled_only(built):
    ds, table = dataset()
    plan = LabelPlan(np.arange(3, 96, 9), 0.25, True)
    whole = loader(built, mode="ordered", labels=plan)
    parts = [iter(WebDatasetLoader(WebDatasetOptions(shards=str(built), mode="ordered"), dataset=ds, split="train",
                                   batch_size=8, train=True, rank=r, world=2, data_config=table, labels=plan))
             for r in range(2)]
    it = iter(whole)
    batches = [next(it) for _ in range(6)]
    for a in batches:
        b0, b1 = next(parts[0]), next(parts[1])
        assert b0["label_mask"].tolist() == b1["label_mask"].tolist() == [True] + [False] * 3
        union = torch.cat([b0["x"][:1], b1["x"][:1], b0["x"][1:], b1["x"][1:]])
        assert torch.equal(union, a["x"])
    again = loader(built, mode="ordered", labels=plan)
    again.load_state_dict(whole.state_dict())
    assert torch.equal(next(iter(again))["x"], next(it)["x"])
    only = next(iter(loader(built, mode="ordered", labels=LabelPlan(plan.labeled, 0.25, False), seed=5)))
    reference = next(iter(MemoryLoader(MemoryOptions(), dataset=ds, split="train", batch_size=8, train=True, seed=5,
                                       labels=LabelPlan(plan.labeled, 0.25, False))))
    assert only["label_mask"].all() and torch.equal(only["x"], reference["x"])


def test_labels_the_shards_do_not_hold(built):
    with pytest.raises(DataError, match=r"lacks 1 of the 3 labelled training samples \(indices \[500\]\)"):
        loader(built, labels=LabelPlan(np.array([1, 2, 500]), 0.25, True))
    with pytest.raises(ConfigError, match="the 3 labelled samples cannot fill the labelled share of a batch of 8"):
        loader(built, labels=LabelPlan(np.array([1, 2, 5]), 0.5, True))


def test_resampled_labelled_batches_never_reuse_labelled_samples_as_unlabelled(built):
    ds, _ = dataset()
    plan = LabelPlan(np.arange(3, 96, 9), 0.25, True)
    full = ds.to_batch({k: torch.from_numpy(v) for k, v in ds.arrays("train").items()})["x"].flatten(1)
    it = iter(loader(built, labels=plan, shuffle_buffer=10, workers=2, steps_per_epoch=4))
    labelled = set(plan.labeled.tolist())
    for _ in range(10):
        b = next(it)
        rows = [int(torch.nonzero((full == row).all(1))[0]) for row in b["x"].flatten(1)]
        assert b["label_mask"].tolist() == [True] * 2 + [False] * 6
        assert all(r in labelled for r in rows[:2]) and not any(r in labelled for r in rows[2:])


@pytest.mark.parametrize("workers", [0, 2])
def test_resampled_mode_resumes_exactly_mid_epoch(built, workers):
    plan = LabelPlan(np.arange(3, 96, 9), 0.25, True)
    opts = dict(shuffle_buffer=20, workers=workers, steps_per_epoch=5, labels=plan)
    whole = loader(built, **opts)
    it = iter(whole)
    before = [next(it) for _ in range(7)]                      # into the second epoch
    state = whole.state_dict()
    after = [next(it) for _ in range(5)]                       # and on into the third
    resumed = loader(built, **opts)
    resumed.load_state_dict(state)
    again = iter(resumed)
    for a in after:
        b = next(again)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(before[-1]["x"], after[0]["x"])

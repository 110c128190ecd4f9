"""The grouping datasets (textured MNIST, moving MNIST): deterministic, correct masks, shardable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rladder.core import shards as S
from rladder.plugins import grouping_data as G
from rladder.registry import DataError, get_registry


def build(name, **options):
    reg = get_registry()
    return reg.build("dataset", reg.resolved_table("dataset", {"name": name, **options}))


def block_digits(n, rng):
    digits = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        r, c = rng.integers(4, 14, 2)
        digits[i, r:r + 10, c:c + 6] = 255
    return digits


def test_texture_bank_has_20_distinct_textures_from_the_checked_fixture(tmp_path):
    bank = G.texture_bank()
    assert bank.shape == (20, 128, 128) and bank.dtype == np.float32
    assert bank.min() >= 0 and bank.max() <= 1
    flat = bank.reshape(20, -1)
    corr = np.corrcoef(flat)
    assert np.abs(corr - np.eye(20)).max() < 0.99                     # no two textures are the same
    assert (flat.std(1) > 0.1).all()                                   # none is flat
    damaged = tmp_path / "textures.npz"
    arrays = G.load_natural_textures()
    arrays["brick"] = arrays["brick"].copy()
    arrays["brick"][0, 0] ^= 1
    np.savez(damaged, **arrays)
    with pytest.raises(DataError, match="damaged"):
        G.load_natural_textures(damaged)


def test_thickening_is_a_3x3_grey_dilation():
    d = np.zeros((1, 7, 7), np.uint8)
    d[0, 3, 3], d[0, 0, 6] = 200, 90
    out = G.thicken(d)
    assert (out[0, 2:5, 2:5] == 200).all() and out[0, 0:2, 5:7].min() == 90
    assert out.sum() == 200 * 9 + 90 * 4
    assert (G.thicken(d, 2)[0, 1:6, 1:6] == 200).all()


def test_textured_generator_is_deterministic_and_composes_two_different_textures():
    bank = G.texture_bank()
    digits = block_digits(64, np.random.default_rng(0))
    a = G.generate_textured(digits, np.random.default_rng(5), bank)
    b = G.generate_textured(digits, np.random.default_rng(5), bank)
    c = G.generate_textured(digits, np.random.default_rng(6), bank)
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["x"], c["x"])
    assert (a["tex"][:, 0] != a["tex"][:, 1]).all()                    # drawn without replacement
    assert np.array_equal(a["mask"][:, 0], G.thicken(digits))           # the mask is the thickened digit
    assert (a["mask"][:, 0] >= digits).all() and (a["mask"] > 0).sum() > (digits > 0).sum()
    # where the mask is 0 the image is the background texture alone, where it is 1 the digit texture:
    # the two regions differ in their pixel statistics for almost every image
    x = a["x"][:, 0].astype(float)
    m = a["mask"][:, 0]
    diff = [abs(x[i][m[i] == 255].mean() - x[i][m[i] == 0].mean()) + abs(x[i][m[i] == 255].std() - x[i][m[i] == 0].std())
            for i in range(len(x))]
    assert np.median(diff) > 5


def test_textured_mnist_batches_and_splits():
    ds = build("textured_mnist", train=40, val=10, test=12, seed=3)
    assert ds.spec.static and ds.spec.seq_len == 3 and ds.spec.num_classes == 10
    arrays = ds.arrays("train")
    assert arrays["x"].shape == (40, 1, 28, 28) and arrays["x"].dtype == np.uint8
    again = build("textured_mnist", train=40, val=10, test=12, seed=3).arrays("train")
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)
    batch = ds.to_batch({k: torch.from_numpy(v) for k, v in arrays.items()})
    assert batch["x"].shape == (40, 1, 28, 28) and batch["masks"].shape == (40, 2, 28, 28)
    assert torch.allclose(batch["masks"].sum(1), torch.ones(40, 28, 28))   # masks sum to 1
    assert len(ds.arrays("test")["y"]) == 12
    dummy = ds.dummy_batch(3, torch.Generator().manual_seed(0))
    assert dummy["x"].shape == (3, 1, 28, 28) and dummy["masks"].shape == (3, 2, 28, 28)


def test_moving_mnist_frames_masks_and_bounces():
    ds = build("moving_mnist", train=20, val=4, test=4, frames=8, size=40, digit_size=14, speed=[2.0, 3.0], seed=1)
    arrays = ds.arrays("train")
    assert arrays["digits"].shape == (20, 2, 14, 14) and arrays["pos"].shape == (20, 9, 2, 2)
    assert arrays["pos"].min() >= 0 and arrays["pos"].max() <= 40 - 14
    moves = np.abs(np.diff(arrays["pos"].astype(float), axis=1)).reshape(-1, 2)
    assert np.hypot(*moves.T).max() <= 3 * 2 ** 0.5 + 1                   # speed bounded (rounding, bounces)
    again = build("moving_mnist", train=20, val=4, test=4, frames=8, size=40, digit_size=14, speed=[2.0, 3.0], seed=1)
    assert all(np.array_equal(arrays[k], again.arrays("train")[k]) for k in arrays)
    batch = ds.to_batch({k: torch.from_numpy(v) for k, v in arrays.items()})
    x, masks = batch["x"], batch["masks"]
    assert x.shape == (20, 8, 1, 40, 40) and masks.shape == (20, 8, 2, 40, 40)
    assert torch.equal(batch["x_next"][:, :-1], x[:, 1:]) and torch.equal(batch["masks_next"][:, :-1], masks[:, 1:])
    layers = G.render_layers(torch.from_numpy(arrays["digits"]), torch.from_numpy(arrays["pos"]), 40)
    assert torch.equal(x, layers[:, :-1].amax(2, keepdim=True).float() / 255)   # max combination
    assert masks.sum(2).max() <= 1                                        # overlaps belong to nobody
    on = layers[:, :-1].float() / 255 > 0.5
    assert torch.equal(masks.bool(), on & ~on.flip(2))
    background = x[:, :, 0] == 0
    assert (masks.sum(2)[background] == 0).all()
    # a digit drawn at its position: the pixel under the corner of digit 0 in frame 0 of sample 0
    r, c = arrays["pos"][0, 0, 0]
    patch = layers[0, 0, 0, r:r + 14, c:c + 14].numpy()
    assert np.array_equal(patch, arrays["digits"][0, 0])


def test_trajectories_reflect_at_the_borders():
    pos = G.trajectories(np.random.default_rng(0), 200, 2, 40, 20, (3.0, 5.0))
    assert pos.min() >= 0 and pos.max() <= 20
    steps = np.abs(np.diff(pos.astype(int), axis=1))
    assert steps.max() <= 6


@pytest.mark.parametrize("name, options", [("textured_mnist", {"train": 12, "val": 4, "test": 4}),
                                           ("moving_mnist", {"train": 6, "val": 3, "test": 3, "frames": 3,
                                                             "size": 32, "digit_size": 14})])
def test_shards_hold_the_stored_form(tmp_path, name, options):
    table = {"name": name, **options}
    manifest = S.build(table, tmp_path / name, shard_size=5, log=lambda m: None)
    assert manifest.is_file()
    info = S.verify(tmp_path / name, log=lambda m: None)
    assert info["splits"]["train"]["samples"] == options["train"]
    ds = build(name, **options)
    arrays = ds.arrays("train")
    first = next(S.iter_tar(tmp_path / name / "train-000000.tar", "train-000000.tar"))[1]
    assert all(np.array_equal(first[k], arrays[k][0]) for k in arrays)

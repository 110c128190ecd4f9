"""The Occluded Moving MNIST generator (spec 4.1.1) against slow, obvious reference code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rladder.plugins import occluded_mnist as O
from rladder.registry import structure


def reference_trajectory(p, v, steps):
    p, v, out = list(p), list(v), [tuple(p)]
    for _ in range(steps - 1):
        for k in range(2):
            p[k] += v[k]
            if p[k] < 0:
                p[k], v[k] = -p[k], -v[k]
            elif p[k] > 18:
                p[k], v[k] = 36 - p[k], -v[k]
        out.append(tuple(p))
    return out


def test_bars_are_4px_wide_with_8_visible_px_between():
    mask = O.visibility()
    row = mask[0]
    assert row.tolist() == [1] * 8 + [0] * 4 + [1] * 8 + [0] * 4 + [1] * 8
    assert (mask[8:12] == 0).all() and (mask[:, 20:24] == 0).all() and mask.sum() == 24 * 24


def test_trajectories_bounce_and_use_the_eight_velocities():
    rng = np.random.default_rng(1)
    pos = O.trajectories(rng, 500, 20)
    assert pos.min() >= 0 and pos.max() <= 18
    steps = np.abs(np.diff(pos, axis=1))
    assert set(map(tuple, steps.reshape(-1, 2))) <= {(1, 2), (2, 1), (0, 2), (2, 0), (1, 0), (0, 1),
                                                     (1, 1), (2, 2), (0, 0)}  # bounces shorten a step
    rng = np.random.default_rng(1)
    p0 = rng.integers(0, 19, (500, 2))
    v0 = O.VELOCITIES[rng.integers(0, 8, 500)]
    for n in range(0, 500, 37):
        assert [tuple(x) for x in pos[n]] == reference_trajectory(p0[n], v0[n], 20)
    first_moves = {tuple(v) for v in (pos[:, 1] - pos[:, 0])[(pos[:, 1] > 1).all(1) & (pos[:, 1] < 17).all(1)]}
    assert first_moves <= {tuple(v) for v in O.VELOCITIES}


def test_render_and_optimal_reconstruction_against_loops():
    rng = np.random.default_rng(2)
    digits = rng.integers(1, 256, (6, 14, 14)).astype(np.uint8)
    pos = O.trajectories(rng, 6, 6)
    clean = O.render(digits, pos)
    mask = O.visibility()
    recon = O.optimal_reconstruction(digits, pos[:, :5], mask)
    for n in range(6):
        seen = np.zeros((14, 14), bool)
        for t in range(6):
            expected = np.zeros((32, 32), np.uint8)
            r, c = pos[n, t]
            expected[r:r + 14, c:c + 14] = digits[n]
            np.testing.assert_array_equal(clean[n, t], expected)
            if t < 5:
                seen |= mask[r:r + 14, c:c + 14].astype(bool)
        want = np.zeros((32, 32), np.uint8)
        want[9:23, 9:23] = digits[n] * seen
        np.testing.assert_array_equal(recon[n], want)


def test_downsample_is_2x2_mean():
    img = np.arange(28 * 28, dtype=np.uint16).reshape(1, 28, 28) % 256
    out = O.downsample(img.astype(np.uint8))
    assert out.shape == (1, 14, 14) and out[0, 0, 0] == int(np.floor(np.mean(img[0, :2, :2]) + 0.5))  # half up


@pytest.fixture(scope="module")
def dataset():
    return O.OccludedMNIST(structure(O.OccludedMNISTOptions, {"train": 300, "val": 50, "test": 70, "seed": 3}))


def test_splits_are_deterministic_and_follow_the_mnist_split(dataset):
    a, b = dataset.arrays("train"), dataset.arrays("train")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    other = O.OccludedMNIST(structure(O.OccludedMNISTOptions, {"train": 300, "seed": 4})).arrays("train")
    assert not np.array_equal(other["clean"], a["clean"])
    assert a["clean"].shape == (300, 6, 1, 32, 32) and a["recon"].shape == (300, 1, 32, 32)
    assert dataset.arrays("val")["y"].shape == (50,) and dataset.arrays("test")["y"].shape == (70,)
    assert len(set(a["y"].tolist())) == 10


def test_batches_hold_occluded_inputs_targets_and_ground_truth(dataset):
    stored = {k: torch.from_numpy(v[:8]) for k, v in dataset.arrays("test").items()}
    batch = dataset.to_batch(stored)
    mask = torch.from_numpy(O.visibility()).float()
    assert batch["x"].shape == batch["x_next"].shape == batch["x_clean"].shape == (8, 5, 1, 32, 32)
    torch.testing.assert_close(batch["x"], batch["x_clean"] * mask)
    torch.testing.assert_close(batch["x_next"][:, :-1], batch["x"][:, 1:])
    assert batch["x"].max() <= 1 and batch["x"][..., 8:12, :].abs().sum() == 0
    assert set(batch) == set(dataset.spec.keys)


def test_recon_input_is_static(dataset):
    ds = O.OccludedMNIST(structure(O.OccludedMNISTOptions, {"test": 10, "input": "recon"}))
    assert ds.spec.static and ds.spec.seq_len == 1
    batch = ds.to_batch({k: torch.from_numpy(v) for k, v in ds.arrays("test").items()})
    assert batch["x"].shape == (10, 1, 32, 32) and set(batch) == {"x", "y"}


def test_more_sequences_than_digits_cycles_through_them():
    ds = O.OccludedMNIST(structure(O.OccludedMNISTOptions, {"val": 12000}))
    assert ds.arrays("val")["y"].shape == (12000,)


def test_each_split_is_generated_once(dataset):
    assert dataset.arrays("val") is dataset.arrays("val")

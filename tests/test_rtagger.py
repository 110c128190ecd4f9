"""RTagger and its tasks: Tagger's inputs and costs against direct computations, the 'none' class,
AMI against scikit-learn, K folding, state carried across steps, `rladder check`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.metrics import adjusted_mutual_info_score

from rladder.core import DataSpec, build_model
from rladder.core.cli import cli
from rladder.plugins import grouping_tasks as GT
from rladder.plugins.rtagger import TaggerState, exp_inv_sinh, tagger_inputs
from rladder.registry import ContractError

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"name": "rtagger", "groups": 3, "hidden": 4, "ladder": {"name": "grouping_ladder", "channels": [4, 6], "top": 8}}
IMAGE = DataSpec("video", (1, 12, 12), 3, {"x": "", "y": "", "masks": ""}, num_classes=10, static=True)


def small_model(spec=IMAGE, **ladder):
    torch.manual_seed(0)
    table = {**SMALL, "ladder": {**SMALL["ladder"], **ladder}}
    return build_model(table, spec)


def test_tagger_inputs_follow_spec_6_2():
    x = torch.tensor([[[[0.2, 0.9]]]])                                   # (B=1, C=1, H=1, W=2)
    z = torch.tensor([[[[[0.5, 0.5]]], [[[0.0, 1.0]]]]])                # (1, K=2, 1, 1, 2)
    m = torch.tensor([[[[[0.7, 0.4]]], [[[0.3, 0.6]]]]])
    v = torch.tensor(0.5)
    out = tagger_inputs(x, z, m, 0.2, v)
    assert out.shape == (1, 2, 4, 1, 2)
    assert torch.equal(out[:, :, 0], z[:, :, 0])
    assert torch.allclose(out[0, :, 1, 0], torch.tensor([[0.7 * (0.2 - 0.5), 0.4 * (0.9 - 0.5)],
                                                         [0.3 * (0.2 - 0.0), 0.6 * (0.9 - 1.0)]]))
    assert torch.equal(out[:, :, 2], m[:, :, 0])
    var = 0.2 ** 2 + 0.5 ** 2
    for pixel, xi in enumerate((0.2, 0.9)):
        nlp = [0.5 * math.log(var) + (z[0, k, 0, 0, pixel].item() - xi) ** 2 / (2 * var) for k in range(2)]
        lik = [math.exp(-a) / sum(math.exp(-b) for b in nlp) for a in nlp]
        assert torch.allclose(out[0, :, 3, 0, pixel], torch.tensor(lik), atol=1e-6)
    assert math.isclose(exp_inv_sinh(torch.tensor(1.0)).item(), 1 + math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(exp_inv_sinh(torch.tensor(-1.0)).item(), 1 / (1 + math.sqrt(2)), rel_tol=1e-6)
    # input_masks = "posterior": m times each group's likelihood, renormalised, in place of m (E-step)
    post = tagger_inputs(x, z, m, 0.2, v, posterior=True)
    gamma = m[0, :, 0, 0] * out[0, :, 3, 0]
    gamma = gamma / gamma.sum(0)
    assert torch.allclose(post[0, :, 2, 0], gamma, atol=1e-6)
    assert torch.allclose(post[0, :, 1, 0], gamma * (x[0, 0, 0] - z[0, :, 0, 0]), atol=1e-6)
    assert torch.equal(post[:, :, 3], out[:, :, 3]) and torch.equal(post[:, :, 0], out[:, :, 0])
    assert gamma[1, 1] > m[0, 1, 0, 0, 1]          # pixel 2 (0.9): group 2 (z = 1.0) explains it best and gains
    same = tagger_inputs(x, z[:, :1].expand(-1, 2, -1, -1, -1), m, 0.2, v, posterior=True)
    assert torch.allclose(same[:, :, 2], m[:, :, 0], atol=1e-6)      # equal reconstructions: the masks as they were


def test_mixture_cost_equals_a_direct_computation():
    torch.manual_seed(1)
    x = torch.rand(2, 1, 1, 3, 3)                                        # (B, T, C, H, W)
    z = torch.rand(2, 1, 3, 1, 3, 3)                                     # K = 3
    logits = torch.randn(2, 1, 3, 1, 3, 3)
    v = torch.tensor(0.3)
    got = GT.mixture_nll(x.unsqueeze(2), z, logits, v)
    pi = torch.softmax(logits, 2)
    direct = np.zeros((2, 1, 1, 3, 3))
    for idx in np.ndindex(*direct.shape):
        b, t, c, h, w = idx
        p = sum((pi[b, t, k, 0, h, w].item() + 1e-5) * math.exp(-(x[b, t, c, h, w].item() - z[b, t, k, c, h, w].item()) ** 2
                                                              / (2 * 0.3)) / math.sqrt(0.3) for k in range(3))
        direct[idx] = -math.log(p)                                       # -log sum_k pi_k N(x|z_k,v) + 1/2 log 2 pi
    assert torch.allclose(got, torch.from_numpy(direct).float(), atol=1e-5)
    # the task averages it over samples, steps and pixels (the denoising target is the clean input)
    task = GT.MixtureCost(GT.MixtureOptions(), DataSpec("video", (1, 3, 3), 1, {"x": ""}, static=True), "denoise")
    outputs = {"heads.recon": z, "heads.mask_logits": logits, "heads.variance": v.expand(2, 1)}
    assert torch.allclose(task.loss(outputs, {"x_uncorrupted": x[:, 0]}), got.mean())
    assert task.needs().noise and "x_uncorrupted" in task.needs().batch


def test_none_class_collapse_and_classification_cost():
    # group 0 says "none" with certainty, group 1 says class 2: the image is class 2
    logits = torch.full((1, 1, 2, 4), -30.0)                              # (B, T, K, 3 classes + none)
    logits[0, 0, 0, 3] = 30.0
    logits[0, 0, 1, 2] = 30.0
    probs = GT.collapse_classes(logits).exp()
    assert torch.allclose(probs, torch.tensor([[[0.0, 0.0, 1.0]]]), atol=1e-6)
    # the general case against Tagger's steps: softmax, drop none, normalise over (groups, classes), sum groups
    torch.manual_seed(2)
    logits = torch.randn(5, 3, 4, 11)
    p = torch.softmax(logits, -1)[..., :-1]
    p = p / p.sum((-1, -2), keepdim=True)
    assert torch.allclose(GT.collapse_classes(logits).exp(), p.sum(-2), atol=1e-6)
    spec = DataSpec("video", (1, 4, 4), 3, {"x": "", "y": ""}, num_classes=10, static=True)
    task = GT.GroupClassify(GT.GroupClassifyOptions(), spec, "classify")
    y = torch.tensor([1, 0, 9, 3, 3])
    expected = -torch.log(p.sum(-2)[:, -1][torch.arange(5), y]).mean()   # at the last iteration
    assert torch.allclose(task.loss({"heads.class": logits}, {"y": y}), expected, atol=1e-5)
    mask = torch.tensor([True, False, False, True, False])
    masked = -torch.log(p.sum(-2)[:, -1][torch.arange(5), y])[mask].mean()
    assert torch.allclose(task.loss({"heads.class": logits}, {"y": y, "label_mask": mask}), masked, atol=1e-5)
    every = GT.GroupClassify(GT.GroupClassifyOptions(every_step=True), spec, "classify")
    per_step = -torch.log(p.sum(-2)[torch.arange(5), :, y])                 # (B, T): every iteration
    assert torch.allclose(every.loss({"heads.class": logits}, {"y": y}), per_step.mean(), atol=1e-5)
    assert torch.allclose(every.loss({"heads.class": logits}, {"y": y, "label_mask": mask}),
                          per_step[mask].mean(), atol=1e-5)
    task.update_metrics({"heads.class": logits}, {"y": y})
    metrics = task.compute_metrics()
    wrong = (p.sum(-2).argmax(-1) != y[:, None]).float().mean(0) * 100
    assert [metrics[f"error_t{t}"] for t in (1, 2, 3)] == pytest.approx(wrong.tolist())
    assert metrics["error"] == pytest.approx(wrong[-1].item())


def test_ami_matches_sklearn_and_leaves_out_unsure_pixels():
    true = torch.zeros(1, 2, 2, 4)                                       # (N, G=2, H=2, W=4), soft masks
    true[0, 0] = torch.tensor([[1.0, 1.0, 0.95, 0.5], [0.0, 0.0, 0.05, 0.0]])
    true[0, 1] = 1 - true[0, 0]
    logits = torch.zeros(1, 3, 1, 2, 4)
    pred = torch.tensor([[2, 2, 1, 0], [0, 0, 2, 1]])                    # argmax over K = 3 per pixel
    logits[0, :, 0] = torch.nn.functional.one_hot(pred, 3).permute(2, 0, 1).float()
    scores, valid = GT.ami_scores(true, logits)
    keep = np.array([True, True, True, False, True, True, True, True])   # 0.5 is not > 0.9
    t = np.array([0, 0, 0, 0, 1, 1, 1, 1])[keep]
    p = pred.flatten().numpy()[keep]
    assert valid.tolist() == [True]
    assert scores[0] == pytest.approx(adjusted_mutual_info_score(t, p, average_method="max"))
    assert scores[0] != pytest.approx(adjusted_mutual_info_score(t, p))   # the arithmetic mean would differ
    # a perfect grouping under other label names scores 1; no sure pixel: the sample is skipped
    perfect = torch.nn.functional.one_hot(torch.tensor([[2, 2, 2, 2], [0, 0, 0, 0]]), 3).permute(2, 0, 1)[None, :, None]
    assert GT.ami_scores(true, perfect.float())[0][0] == pytest.approx(1.0)
    empty = torch.zeros(1, 2, 2, 4)
    assert GT.ami_scores(empty, logits)[1].tolist() == [False]
    assert GT.ami_scores(true, logits, backend="sklearn")[0][0] == pytest.approx(scores[0], abs=1e-12)


def test_batched_ami_is_scikit_learns_ami():
    rng = np.random.default_rng(3)
    cases = []
    for n in range(300):
        size = int(rng.integers(1, 60))
        t = rng.integers(0, int(rng.integers(1, 4)), size)
        p = rng.integers(0, int(rng.integers(1, 5)), size)
        if n % 7 == 0:
            p = (t + 1) % 3                                               # a perfect grouping, renamed
        cases.append((t, p))
    width = max(len(t) for t, _ in cases)
    true = torch.zeros(len(cases), width, dtype=torch.long)
    pred = torch.zeros_like(true)
    keep = torch.zeros(len(cases), width, dtype=torch.bool)
    for i, (t, p) in enumerate(cases):
        true[i, :len(t)], pred[i, :len(p)], keep[i, :len(t)] = torch.from_numpy(t), torch.from_numpy(p), True
    for method in ("max", "arithmetic"):
        got = GT.batched_ami(true, pred, keep, method).numpy()
        want = [adjusted_mutual_info_score(t, p, average_method=method) for t, p in cases]
        assert np.allclose(got, want, atol=1e-9, rtol=0), method


def test_ami_task_per_step_and_reduced_over_processes(monkeypatch):
    spec = DataSpec("video", (1, 2, 4), 2, {"x": "", "masks": ""}, static=True)
    task = GT.AMI(GT.AMIOptions(), spec, "ami")
    true = torch.zeros(2, 2, 2, 4)
    true[:, 0, :, :2] = 1
    true[:, 1, :, 2:] = 1
    good = true.unsqueeze(2)                                             # logits with K = 2 that match
    bad = torch.zeros_like(good)
    bad[:, 0, 0, 0] = 1                                                  # one pixel in group 0, rest group 1... per sample
    logits = torch.stack([bad, good], 1)                                  # step 1 poor, step 2 perfect: (B, T, K, 1, H, W)
    task.update_metrics({"heads.mask_logits": logits}, {"masks": true})
    single = task.compute_metrics()
    assert single["ami_t2"] == pytest.approx(1.0) and single["ami"] == single["ami_t2"] and single["ami_t1"] < 0.5
    # another process saw two samples of AMI 0 at both steps: reduce_sum adds its sums and counts
    monkeypatch.setattr(GT, "reduce_sum", lambda *ts: [t + o for t, o in zip(ts, (torch.zeros(2), torch.full((2,), 2.0),
                                                                                torch.zeros(2, 2)))])
    both = task.compute_metrics()
    assert both["ami_t2"] == pytest.approx(0.5) and both["ami_t1"] == pytest.approx(single["ami_t1"] / 2)
    assert task.loss({"heads.mask_logits": logits}, {}).item() == 0
    assert "ami_sequence" not in single                          # static targets: no sequence to follow


def test_ami_of_video_tells_a_grouping_that_tracks_from_a_fixed_split_of_the_canvas():
    """Two objects swap halves of the canvas between frames: fixed left/right halves split every frame
    perfectly (per-frame AMI 1) but give each object the other group in frame 2; only a grouping that
    follows the objects scores on the sequence AMI. ``ami_halves`` is the halves' per-frame AMI."""
    spec = DataSpec("video", (1, 2, 8), 2, {"x": "", "masks_next": ""})
    true = torch.zeros(1, 2, 2, 2, 8)                                    # (B, T, G, H, W)
    true[0, 0, 0, :, 0:2] = true[0, 0, 1, :, 6:8] = 1                    # frame 1: A left, B right
    true[0, 1, 0, :, 4:6] = true[0, 1, 1, :, 2:4] = 1                    # frame 2: A right, B left
    halves = GT.canvas_halves(torch.zeros(2, 2, 1, 2, 8)).unsqueeze(0)   # (1, T, K, 1, H, W)
    results = {}
    for name, logits in {"tracks": true.unsqueeze(3), "halves": halves}.items():
        task = GT.AMI(GT.AMIOptions(target="masks_next", average="mean"), spec, "ami")
        task.update_metrics({"heads.mask_logits": logits}, {"masks_next": true})
        results[name] = task.compute_metrics()
    assert results["tracks"]["ami"] == pytest.approx(1) and results["tracks"]["ami_sequence"] == pytest.approx(1)
    assert results["halves"]["ami"] == pytest.approx(1) and results["halves"]["ami_sequence"] < 0.1
    assert results["tracks"]["ami_halves"] == results["halves"]["ami_halves"] == pytest.approx(1)


def test_groups_are_folded_into_the_batch_and_permute_with_the_initial_masks():
    model = small_model().eval()
    x = torch.rand(2, 1, 12, 12)
    state = model.init_state(2, x)
    perm = torch.tensor([2, 0, 1])
    permuted = TaggerState(model.inner.init_state(6, x), state.z[:, perm], state.m[:, perm], 0)
    with torch.no_grad():
        out_a, _ = model(x, state, steps=3)
        out_b, _ = model(x, permuted, steps=3)
    for name in ("heads.recon", "heads.mask_logits", "heads.class"):
        assert torch.allclose(out_a[name][:, :, perm], out_b[name], atol=1e-5), name
    assert out_a["heads.recon"].shape == (2, 3, 3, 1, 12, 12)
    assert out_a["heads.mask_logits"].shape == (2, 3, 3, 1, 12, 12)
    assert out_a["heads.class"].shape == (2, 3, 3, 11)
    # evaluation starts from the same masks every time; training draws new ones
    with torch.no_grad():
        again, _ = model(x, steps=3)
        first, _ = model(x, steps=3)
    assert torch.equal(again["heads.mask_logits"], first["heads.mask_logits"])


def test_state_carries_across_calls_on_video():
    spec = DataSpec("video", (1, 12, 12), 4, {"x": "", "x_next": ""})
    model = small_model(spec).eval()
    x = torch.rand(2, 4, 1, 12, 12)
    with torch.no_grad():
        state = model.init_state(2, x)
        whole, _ = model(x, state)
        part1, s = model(x[:, :2], state)
        part2, _ = model(x[:, 2:], s)
    assert set(whole) == {"heads.recon", "heads.mask_logits", "heads.variance"}      # no classes: no class head
    for name, value in whole.items():
        assert torch.allclose(value, torch.cat([part1[name], part2[name]], 1), atol=1e-6), name


def test_the_recurrent_state_matters_and_tagger_has_none():
    rtagger, tagger = small_model(), small_model(recurrent=False, feedback=False)
    x = torch.rand(2, 1, 12, 12)
    assert rtagger.init_state(2, x).inner.encoder != ((),) * len(rtagger.inner.levels)
    inner = tagger.init_state(2, x).inner
    assert all(cell == () for cell in inner.encoder) and inner.decoder == ()       # only z and m carry over
    assert any("ConvLSTM" in line for line in rtagger.summary())
    assert not any("ConvLSTM" in line or "LSTMCell" in line for line in tagger.summary())


def test_wrapping_a_model_without_a_full_resolution_decoder_is_a_contract_error():
    with pytest.raises(ContractError, match="decoder"):
        small_model(decoder=False)
    with pytest.raises(ContractError, match="resolution"):
        build_model({**SMALL, "decoder_output": "decoder.1"}, IMAGE)


@pytest.mark.parametrize("sets", [[], ["--set", "model.ladder.recurrent=false", "--set", "model.ladder.feedback=false"]])
def test_rladder_check_textured(sets):
    result = CliRunner().invoke(cli, ["check", str(ROOT / "configs/grouping/rtagger_textured.toml"), *sets])
    assert result.exit_code == 0, result.output
    assert "check passed" in result.output and "RTagger: K = 3 groups" in result.output
    assert "get no gradient" not in result.output


def test_rladder_check_moving_mnist():
    result = CliRunner().invoke(cli, ["check", str(ROOT / "configs/grouping/rtagger_moving_mnist.toml"),
                                      "--set", "data.frames=3"])
    assert result.exit_code == 0, result.output
    assert "task predict: MixturePredict" in result.output and "check passed" in result.output


def test_initial_masks_sum_to_one_and_smooth_ones_are_blobs():
    x = torch.zeros(4, 1, 12, 12)
    tagger = small_model().eval()
    smooth = build_model({**SMALL, "mask_init_smooth": 3, "mask_init_std": 2.0}, IMAGE).eval()
    for model in (tagger, smooth):
        m = model.init_state(4, x).m
        assert m.shape == (4, 3, 1, 12, 12) and torch.allclose(m.sum(1), torch.ones(4, 1, 12, 12))

    def neighbour_corr(m):
        a, b = m[..., :, :-1].flatten(), m[..., :, 1:].flatten()
        return torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert neighbour_corr(tagger.init_state(4, x).m) < 0.2 and neighbour_corr(smooth.init_state(4, x).m) > 0.8


def test_pictures_like_figs_6_and_7():
    model = small_model().eval()
    batch = {"x": torch.rand(2, 1, 12, 12), "masks": torch.rand(2, 2, 12, 12)}
    with torch.no_grad():
        outputs, _ = model(batch["x"], steps=3)
    task = GT.MixtureCost(GT.MixtureOptions(), IMAGE, "denoise")
    fig = task.figures(batch, outputs, task.predictions(outputs))["grouping"]
    assert len(fig.axes) == 2 * 3 * (3 + 3)                   # a row per sample and iteration: input, truth, z_k, pi
    video = DataSpec("video", (1, 12, 12), 6, {"x": "", "x_next": ""})
    vmodel = small_model(video)
    task = GT.MixturePredict(GT.MixtureOptions(), video, "predict")
    task.bind(vmodel)
    fig = task.figures({"x": torch.rand(2, 6, 1, 12, 12), "x_next": torch.rand(2, 6, 1, 12, 12)}, {}, {})["grouping_video"]
    assert len(fig.axes) == 2 * 2 * 7                         # frames 0..6 and their predictions, two samples
    assert vmodel.training                                     # drawing leaves the model's mode as it was


# --------------------------------------------------------------------------- mechanics (docs/table4.md, Mechanics)
def _flat_squares(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, 12, 12) images: a square of intensity 0.8 at a random place on 0.2, and masks (n, 2, 12, 12)."""
    gen = torch.Generator().manual_seed(seed)
    fg = torch.zeros(n, 1, 12, 12)
    for i, (r, c, s) in enumerate(torch.randint(0, 5, (n, 3), generator=gen).tolist()):
        fg[i, 0, r:r + 4 + s, c:c + 4 + s] = 1
    return 0.2 + 0.6 * fg, torch.cat([1 - fg, fg], 1)


def test_groups_differ_at_the_first_step_and_the_cost_reaches_the_mask_logits():
    model = small_model().train()
    x, _ = _flat_squares(4)
    out, _ = model(x + 0.2 * torch.randn_like(x), steps=2)
    a, z = out["heads.mask_logits"], out["heads.recon"]
    spread = (a[:, 0] - a[:, 0].mean(1, keepdim=True)).pow(2).mean().sqrt() / a[:, 0].pow(2).mean().sqrt()
    assert spread > 0.1                                     # the K copies are not copies of each other
    v = out["heads.variance"].view(*z.shape[:2], 1, 1, 1, 1)
    GT.mixture_nll(x[:, None, None], z, a, v).mean().backward()
    assert model.to_mask.weight.grad.abs().sum() > 0 and model.mask_scale.grad.abs() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.project.parameters())


def test_batch_norm_in_the_inner_ladder_uses_the_batch_statistics_everywhere():
    model = small_model(norm="batch")
    bns = [m for m in model.inner.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    decoders = [level.decoder for level in model.inner.levels]
    assert all(isinstance(d.norm, torch.nn.modules.batchnorm._BatchNorm) for d in decoders)   # norm reaches them
    assert len(bns) > len(decoders) and not any(m.track_running_stats or m.running_mean is not None for m in bns)
    x, _ = _flat_squares(4)
    state = model.init_state(4, x)
    with torch.no_grad():
        train, _ = model.train()(x, state, steps=2)
        evaluated, _ = model.eval()(x, state, steps=2)
    assert torch.allclose(train["heads.mask_logits"], evaluated["heads.mask_logits"], atol=1e-6)


def test_initial_variance_and_distinct_initial_reconstructions_make_L_m_see_the_content():
    x, masks = _flat_squares(64)
    tagger = small_model().eval()
    assert float(tagger.variance().detach()) == pytest.approx(1 + math.sqrt(2))   # Tagger's exp(asinh(1))
    state = tagger.init_state(64, x)
    lm = tagger_inputs(x, state.z, state.m, 0.2, tagger.variance())[:, :, -1]
    assert torch.allclose(lm, torch.full_like(lm, 1 / 3))                   # equal z: L(m) says nothing
    torch.manual_seed(0)
    spread = build_model({**SMALL, "groups": 2, "z_init_spread": 1.0, "variance_init": 0.05}, IMAGE).eval()
    assert float(spread.variance().detach()) == pytest.approx(0.05)
    state = spread.init_state(64, x)
    z0 = state.z[:, :, 0, 0, 0]
    assert (state.z == z0[:, :, None, None, None]).all() and ((z0 - 0.5).abs() <= 0.5).all()
    assert torch.equal(spread.init_state(64, x).z, state.z)                # evaluation: seeded, repeatable
    lm = tagger_inputs(x, state.z, state.m, 0.2, spread.variance())[:, :, -1:]
    scores, _ = GT.ami_scores(masks, torch.log(lm))
    split = (z0.mean(1) - 0.5).abs() < 0.29         # the midpoint of z_1 and z_2 between the intensities 0.2 and 0.8
    assert split.sum() > 10 and np.allclose(scores[split.numpy()], 1.0)


def test_input_mask_temperature_sharpens_the_masks_the_next_step_sees_but_not_the_costs_pi():
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    outs, states = [], []
    for t in (1.0, 0.1):
        torch.manual_seed(0)
        model = build_model({**SMALL, "input_mask_temperature": t}, IMAGE).eval()
        out, state = model.step(x, None)
        outs.append(out["heads.mask_logits"])
        states.append(state.m)
        assert torch.allclose(state.m, torch.softmax(out["heads.mask_logits"] / t, dim=1))
    assert torch.equal(outs[0], outs[1])                        # same weights, same first step: same logits
    assert states[1].amax(1).mean() > states[0].amax(1).mean() + 0.1    # T = 0.1: masks near one-hot
    with pytest.raises(Exception, match="input_mask_temperature"):
        build_model({**SMALL, "input_mask_temperature": 0.0}, IMAGE)


def test_posterior_input_masks_change_what_a_step_sees_only_where_the_groups_reconstructions_differ():
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    for spread, differ in ((0.0, False), (0.8, True)):
        outs = []
        for masks in ("predicted", "posterior"):
            torch.manual_seed(0)
            model = build_model({**SMALL, "input_masks": masks, "z_init_spread": spread}, IMAGE).eval()
            outs.append(model.step(x, None)[0]["heads.recon"])
        assert (not torch.allclose(outs[0], outs[1], atol=1e-5)) == differ, f"z_init_spread = {spread}"
    with pytest.raises(Exception, match="input_masks"):
        build_model({**SMALL, "input_masks": "em"}, IMAGE)


def test_taught_masks_cost_is_free_of_the_groups_order_and_keeps_one_assignment_per_sample():
    true = torch.zeros(2, 3, 2, 2, 4)                                     # (B, T, G = 2, H, W): left and right halves
    true[:, :, 0, :, :2] = 1
    true[:, :, 1, :, 2:] = 1
    true[1, :, :, 0, 0] = 0.5                                             # an unsure pixel: not taught
    sure = 10 * true.unsqueeze(3)                                         # logits (B, T, 2, 1, H, W) that match
    k3 = torch.cat([sure, torch.full_like(sure[:, :, :1], -10)], 2)      # K = 3, the third group empty
    assert GT.taught_masks_cost(k3, true).item() < 1e-3
    assert GT.taught_masks_cost(k3[:, :, [2, 1, 0]], true).item() < 1e-3   # any order of the groups
    assert GT.taught_masks_cost(torch.zeros_like(k3), true).item() == pytest.approx(math.log(3), rel=1e-5)
    # the same truth at every step, given once (static): the same cost
    assert GT.taught_masks_cost(k3, true[:, 0]).item() == pytest.approx(GT.taught_masks_cost(k3, true).item())
    # one assignment for all steps: groups swapped at step 2 cannot both be right
    swapped = k3.clone()
    swapped[:, 1] = k3[:, 1, [1, 0, 2]]
    assert GT.taught_masks_cost(swapped, true).item() == pytest.approx(10 / 3, rel=1e-3)   # 1 step in 3 wrong by 10 nats
    with pytest.raises(ContractError, match="model.groups >= 2"):
        GT.taught_masks_cost(k3[:, :, :1], true)


def test_taught_masks_task_trains_the_masks_and_its_weight_can_fade(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", str(ROOT / "configs/grouping/rtagger_moving_mnist.toml"), "--run-dir", str(run),
        "--set", "data.train=16", "--set", "data.val=8", "--set", "data.test=8", "--set", "data.frames=3",
        "--set", "train.steps=3", "--set", "train.eval_every=3", "--set", "train.checkpoint_every=3",
        "--set", "train.log_every=1", "--set", "train.batch_size=8", "--set", "train.threads=1",
        "--set", "tasks.teach.name=taught_masks", "--set", "tasks.teach.target=masks_next",
        "--set", "tasks.teach.weight=0.01", "--set", "tasks.teach.weight_ramp_from=100",
        "--set", "tasks.teach.weight_ramp_steps=2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    weights = [r["teach/weight"] for r in rows if r["split"] == "train"]
    assert weights == pytest.approx([1.0, 0.505, 0.01])                   # from 100 x 0.01 down to 0.01
    val = [r for r in rows if r["split"] == "val"][-1]
    assert 0 < val["teach/ce"] < 5 and "ami/ami" in val

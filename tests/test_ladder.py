"""The engine: eqs. (1)-(3), state carry, ablation switches, the three input layouts."""

from __future__ import annotations

import pytest
import torch

from rladder.core import DataSpec, LadderSpec, build_ladder
from rladder.registry import structure


def spec_for(levels, heads=(), **switches) -> LadderSpec:
    return structure(LadderSpec, {"levels": levels, "heads": list(heads), **switches})


def video_ladder(**switches):
    dec = {"name": "vanilla"}
    levels = [
        {"encoder": {"name": "conv_lstm", "channels": 4}, "decoder": dec},
        {"encoder": {"name": "conv", "channels": 6, "stride": 2}, "decoder": {"name": "learned"}},
        {"encoder": {"name": "conv_gru", "channels": 6}, "decoder": dec},
        {"encoder": {"name": "gru", "units": 8}, "decoder": dec},
        {"encoder": {"name": "lstm", "units": 8}, "decoder": dec},
    ]
    heads = [{"name": "frame", "source": "decoder.0", "out": "input"},
             {"name": "class", "source": "encoder.-1", "kind": "classifier", "out": "classes"}]
    if switches.get("decoder") is False:
        heads = heads[1:]
    data = DataSpec("video", (1, 8, 8), 5, {"x": "", "y": ""}, num_classes=3)
    torch.manual_seed(0)
    return build_ladder(spec_for(levels, heads, **switches), data)


def seq(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_outputs_of_every_level_at_every_step():
    model = video_ladder()
    out, state = model(seq(2, 5, 1, 8, 8))
    assert out["encoder.0"].shape == (2, 5, 4, 8, 8) and out["encoder.1"].shape == (2, 5, 6, 4, 4)
    assert out["encoder.4"].shape == (2, 5, 8)
    assert all(out[f"decoder.{l}"].shape == out[f"encoder.{l}"].shape for l in range(5))
    assert out["heads.frame"].shape == (2, 5, 1, 8, 8) and out["heads.class"].shape == (2, 5, 3)
    assert state.steps == 5 and len(state.decoder) == 5 and len(state.encoder) == 5


@pytest.mark.parametrize("switches", [{}, {"feedback": False}, {"decoder": False}])
def test_chunked_run_equals_one_run(switches):
    model = video_ladder(**switches)
    x = seq(3, 5, 1, 8, 8)
    whole, s_whole = model(x)
    a, s = model(x[:, :2])
    b, s = model(x[:, 2:3], s)
    c, s = model(x[:, 3:], s)
    for key in whole:
        torch.testing.assert_close(torch.cat([a[key], b[key], c[key]], 1), whole[key], rtol=0, atol=1e-6)
    for mine, ref in zip(s.encoder, s_whole.encoder):
        for m, r in zip(mine, ref):
            torch.testing.assert_close(m, r, rtol=0, atol=1e-6)
    assert s.steps == s_whole.steps == 5


def test_step_by_step_equals_forward_and_d0_is_zero():
    model = video_ladder()
    x = seq(2, 3, 1, 8, 8)
    whole, _ = model(x)
    state = model.init_state(2, x)
    assert all(torch.count_nonzero(d) == 0 for d in state.decoder)  # d_l(0) = 0
    for t in range(3):
        out, state = model.step(x[:, t], state)
        torch.testing.assert_close(out["heads.frame"], whole["heads.frame"][:, t], rtol=0, atol=1e-6)


def _perturb_decoders(model):
    with torch.no_grad():
        for level in model.levels:
            for p in level.decoder.parameters():
                p.add_(0.5)


def test_decoder_to_encoder_links_carry_top_down_information():
    """With links, the decoder changes the encoder from t=2 on (not at t=1, since d(0)=0)."""
    x = seq(2, 4, 1, 8, 8)
    base, _ = video_ladder()(x)
    model = video_ladder()
    _perturb_decoders(model)
    changed, _ = model(x)
    torch.testing.assert_close(changed["encoder.2"][:, 0], base["encoder.2"][:, 0], rtol=0, atol=0)
    assert (changed["encoder.2"][:, 1:] - base["encoder.2"][:, 1:]).abs().max() > 1e-4


def test_without_links_the_decoder_never_reaches_the_encoder():
    x = seq(2, 4, 1, 8, 8)
    base, _ = video_ladder(feedback=False)(x)
    model = video_ladder(feedback=False)
    _perturb_decoders(model)
    changed, state = model(x)
    for l in range(5):
        torch.testing.assert_close(changed[f"encoder.{l}"], base[f"encoder.{l}"], rtol=0, atol=0)
    assert (changed["decoder.0"] - base["decoder.0"]).abs().max() > 1e-4
    assert state.decoder == ()


def test_without_decoder_there_are_no_decoder_outputs_or_parameters():
    model = video_ladder(decoder=False)
    out, _ = model(seq(2, 3, 1, 8, 8))
    assert not any(k.startswith("decoder.") for k in out)
    assert all(level.decoder is None for level in model.levels)


def test_piano_roll_and_vector_inputs():
    roll = build_ladder(spec_for([
        {"encoder": {"name": "conv_lstm", "channels": 4}, "decoder": {"name": "vanilla"}},
        {"encoder": {"name": "conv", "channels": 4, "stride": 2}, "decoder": {"name": "vanilla"}},
        {"encoder": {"name": "lstm", "units": 6}, "decoder": {"name": "vanilla"}}],
        [{"name": "notes", "source": "decoder.0", "out": "input"}]),
        DataSpec("sequence", (1, 88), 7, {"x": ""}))
    out, _ = roll(seq(2, 7, 1, 88))
    assert out["heads.notes"].shape == (2, 7, 1, 88) and out["encoder.1"].shape == (2, 7, 4, 44)
    vec = build_ladder(spec_for([
        {"encoder": {"name": "input"}, "decoder": {"name": "vanilla"}},
        {"encoder": {"name": "gru", "units": 5}, "decoder": {"name": "learned"}},
        {"encoder": {"name": "linear", "units": 4}, "decoder": {"name": "vanilla"}}]),
        DataSpec("vector", (10,), 4, {"x": ""}))
    out, _ = vec(seq(3, 4, 10))
    assert out["encoder.0"].shape == (3, 4, 10) and out["decoder.0"].shape == (3, 4, 10)


def test_iterative_inference_on_a_static_input():
    model = video_ladder()
    x = seq(2, 1, 8, 8)
    out, state = model(x, steps=4)
    repeated, _ = model(x.unsqueeze(1).expand(2, 4, 1, 8, 8))
    torch.testing.assert_close(out["heads.class"], repeated["heads.class"], rtol=0, atol=1e-6)
    assert state.steps == 4


def test_rtagger_style_groups_folded_into_the_batch():
    """K groups share weights (folded into the batch); each iteration's input comes from the last output."""
    model = video_ladder()
    batch, groups = 2, 3
    x = seq(batch, 1, 8, 8)
    state = None
    estimate = torch.zeros(batch * groups, 1, 8, 8)
    for _ in range(3):
        inputs = x.repeat_interleave(groups, 0) - estimate          # built from the previous iteration
        out, state = model.step(inputs, state)
        estimate = torch.sigmoid(out["heads.frame"])
    assert estimate.shape == (batch * groups, 1, 8, 8) and state.steps == 3
    # group k of sample b only ever sees its own row: reordering groups reorders results
    perm = torch.arange(batch * groups).view(batch, groups).flip(1).reshape(-1)
    out_a, _ = model.step(inputs, state)
    out_b, _ = model.step(inputs[perm], state.map(lambda t: t[perm]))
    torch.testing.assert_close(out_b["heads.frame"], out_a["heads.frame"][perm], rtol=0, atol=1e-6)


def test_keep_limits_outputs_and_detach_heads_stop_gradients():
    model = video_ladder()
    out, _ = model(seq(2, 2, 1, 8, 8), keep={"heads.class", "encoder.-1"})
    assert set(out) == {"heads.class", "encoder.4"}
    probe = build_ladder(spec_for([{"encoder": {"name": "conv_lstm", "channels": 4}, "decoder": {"name": "vanilla"}}],
                                  [{"name": "probe", "source": "decoder.0", "detach": True}]),
                         DataSpec("video", (1, 8, 8), 2, {"x": ""}))
    out, _ = probe(seq(2, 2, 1, 8, 8))
    out["heads.probe"].sum().backward()
    assert probe.levels[0].encoder.gates.weight.grad is None
    assert probe.heads["probe"].layer.weight.grad is not None


def test_state_detach_cuts_the_graph():
    model = video_ladder()
    _, state = model(seq(2, 2, 1, 8, 8))
    assert state.decoder[0].requires_grad and not state.detach().decoder[0].requires_grad


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected \(B, T, 1, 8, 8\)"):
        video_ladder()(torch.rand(2, 5, 8, 8))


# ------------------------------------------------------------------ the decoder-to-encoder link options
def test_a_link_gate_at_zero_starts_the_ladder_as_its_no_feedback_ablation():
    """gate = 0: what the encoders compute cannot depend on d_l(t-1), so the decoder cannot change them."""
    model = video_ladder(links={"gate": "channel", "gate_init": 0.0})
    x = seq(2, 4, 1, 8, 8)
    before, _ = model(x)
    with torch.no_grad():
        for level in model.levels:
            for p in level.decoder.parameters():
                p.add_(torch.randn_like(p))
    after, _ = model(x)
    for l in range(len(model.levels)):
        torch.testing.assert_close(after[f"encoder.{l}"], before[f"encoder.{l}"], rtol=0, atol=0)
    assert not torch.equal(after["decoder.0"], before["decoder.0"])
    # and the gate learns: the loss at the top reaches it through the link
    after["encoder.4"].sum().backward()
    assert model.levels[0].feedback.gate.grad.abs().sum() > 0


def test_a_detached_link_passes_no_gradient_to_earlier_decoder_outputs():
    model = video_ladder(links={"detach": True})
    out, _ = model(seq(2, 3, 1, 8, 8))
    out["encoder.4"][:, -1].sum().backward()      # the top encoder reads the decoder only through the links
    assert all(p.grad is None or p.grad.abs().sum() == 0 for l in model.levels for p in l.decoder.parameters())
    linked = video_ladder()
    out, _ = linked(seq(2, 3, 1, 8, 8))
    out["encoder.4"][:, -1].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for l in linked.levels for p in l.decoder.parameters())


def test_a_normalised_link_gives_the_encoder_unit_rms_per_sample():
    model = video_ladder(links={"norm": "layer", "scale": 0.5})
    d = torch.randn(3, 4, 8, 8) * 7 + 2
    got = model.levels[0].feedback(d)
    torch.testing.assert_close(got.pow(2).mean((1, 2, 3)).sqrt(), torch.full((3,), 0.5), rtol=1e-3, atol=1e-3)


def test_parts_name_every_level_and_head():
    parts = video_ladder().parts()
    assert {"encoder.0", "decoder.4", "feedback.2", "heads.frame", "heads.class"} <= set(parts)
    assert not any(k.startswith(("decoder.", "feedback.")) for k in video_ladder(decoder=False).parts())


def test_carry_continues_the_sequences_a_chunked_loader_marks_and_restarts_the_others():
    """Truncated BPTT: chunk 2 continues chunk 1 where batch['carry'] is True, starts fresh where False."""
    from rladder.core.objective import Carry

    model = video_ladder().eval()
    spec = DataSpec("video", (1, 8, 8), 3, {"x": "", "y": ""}, num_classes=3)
    x = seq(2, 6, 1, 8, 8)
    with torch.no_grad():
        whole, _ = model(x)
        fresh, _ = model(x[:, 3:])
        carry = Carry()
        first = carry.run(model, {"x": x[:, :3], "carry": torch.tensor([False, False])}, spec)
        second = carry.run(model, {"x": x[:, 3:], "carry": torch.tensor([True, False])}, spec)
    torch.testing.assert_close(first["encoder.0"], whole["encoder.0"][:, :3], rtol=0, atol=1e-6)
    torch.testing.assert_close(second["heads.frame"][0], whole["heads.frame"][0, 3:], rtol=0, atol=1e-6)
    torch.testing.assert_close(second["heads.frame"][1], fresh["heads.frame"][1], rtol=0, atol=1e-6)
    # the carried state is detached and survives a checkpoint as plain tensors
    saved = carry.state_dict()
    assert saved and all(isinstance(t, torch.Tensor) and t.grad_fn is None for t in saved)
    again = Carry()
    again.load_state_dict(saved, model, x)
    with torch.no_grad():
        a = carry.run(model, {"x": x[:, :2], "carry": torch.tensor([True, True])}, spec)
        b = again.run(model, {"x": x[:, :2], "carry": torch.tensor([True, True])}, spec)
    torch.testing.assert_close(a["heads.frame"], b["heads.frame"], rtol=0, atol=0)


def _grads(model, x, scale):
    model.zero_grad()
    model.decoder_grad.set(scale)
    out, _ = model(x)
    weights = seq(*out["decoder.0"].shape, seed=1)
    (out["decoder.0"] * weights).sum().backward()     # a cost on the decoder alone (like next-frame prediction)
    model.decoder_grad.set(1.0)
    enc = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for l in model.levels
           for p in l.encoder.parameters()]
    dec = [p.grad.clone() for l in model.levels for p in l.decoder.parameters()]
    return out["decoder.0"].detach(), enc, dec


def test_the_decoder_gradient_gate_scales_what_the_decoders_send_into_the_encoder():
    """One step: every path from a decoder cost into the encoder crosses one e_l(t) -> decoder l edge."""
    model = video_ladder()
    _perturb_decoders(model)                # away from the Ladder init, where d_l = 0 passes no gradient on
    x = seq(2, 1, 1, 8, 8)
    full_out, full_enc, full_dec = _grads(model, x, 1.0)
    half_out, half_enc, half_dec = _grads(model, x, 0.5)
    off_out, off_enc, off_dec = _grads(model, x, 0.0)
    torch.testing.assert_close(off_out, full_out, rtol=0, atol=0)       # the forward pass does not change
    assert sum(g.abs().sum() for g in full_enc) > 0
    assert all(g.abs().sum() == 0 for g in off_enc)                       # the encoder gets nothing at 0
    for h, f in zip(half_enc, full_enc):
        torch.testing.assert_close(h, 0.5 * f)
    for o, h, f in zip(off_dec, half_dec, full_dec):                      # the decoders get their full gradient
        torch.testing.assert_close(o, f)
        torch.testing.assert_close(h, f)

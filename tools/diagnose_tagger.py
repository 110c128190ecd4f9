#!/usr/bin/env python
"""Diagnostic: can RTagger / Tagger group the simplest images? (docs/table4.md, "Mechanics").

Static 28x28 images: a thickened MNIST digit of one flat intensity on a background of another
(``--flat A,B``; ``--flat random`` draws both per image, at least 0.3 apart), or the textured MNIST
of Table 4 (``--textured``). The model is the registry's ``rtagger`` (the same code the trainer
runs); training is a plain loop: Gaussian input noise, Tagger's mixture cost of the clean image
averaged over the iterations (``tagger_denoise``'s formula). Every ``--eval-every`` steps it
prints the clean-path AMI after every iteration on held-out images (``ami_scores``, Tagger's
settings; after the last iteration also against the split of the clean image at 0.5, which
tells whether the groups split the pixels by intensity), the mixture cost, and how different the
K groups are at iteration 1 (relative spread of the projected inputs, of d_0 and of the mask
logits over the groups: 0 means the groups are copies of each other). One thread, a few minutes:

    python tools/diagnose_tagger.py --steps 400                       # feed-forward Tagger, K = 2
    python tools/diagnose_tagger.py --steps 400 --recurrent --groups 3
    python tools/diagnose_tagger.py --model '{"ladder": {"norm": "group"}}'   # any rtagger option
    python tools/diagnose_tagger.py --recurrent --model '{"z_init_spread": 1, "variance_init": 0.05}'

``--shape pixels`` replaces the digit by a random pixel-by-pixel segmentation, which no context
predicts (only the intensity separates the groups). ``--data JSON`` changes the textured MNIST's
options (e.g. ``'{"scale_range": [1.0, 2.0]}'``).

``--plain WIDTH,DEPTH`` trains no Tagger at all: a plain per-pixel segmenter (DEPTH 3x3 convs of
WIDTH channels, dilations 1, 1, 2, 4, 8, 1, ..., group norm, ReLU) told the true digit mask (binary
cross-entropy on the noisy images), scored with the same AMI. It bounds what any model of that
cost can reach on the data in that many steps, supervision included:

    python tools/diagnose_tagger.py --textured --plain 32,7 --steps 3000 --eval-every 250

Measured results: docs/table4.md, Mechanics and "How far AMI 0.5 is".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def flat_images(n: int, split: str, flat: str, seed: int, shape: str = "digit") -> dict[str, torch.Tensor]:
    """(n, 1, 28, 28) images, a digit of one flat intensity on another, and their masks (n, 2, 28, 28).

    ``shape = "pixels"``: instead of the digit, every pixel independently belongs to the foreground
    with probability 1/2 (a segmentation no context can predict: only intensity tells the groups apart)."""
    from rladder.plugins.grouping_data import thicken
    from rladder.plugins.mnist import MNISTSource, load_mnist, split_arrays

    images, labels = split_arrays(load_mnist(MNISTSource()), split)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), n, replace=False)
    m = thicken(images[pick]).astype(np.float32)[:, None] / 255
    if shape == "pixels":
        m = (rng.random(m.shape) < 0.5).astype(np.float32)
    if flat == "random":
        a = rng.uniform(0, 1, (n, 2))
        while (bad := np.abs(a[:, 0] - a[:, 1]) < 0.3).any():
            a[bad] = rng.uniform(0, 1, (int(bad.sum()), 2))
        bg, fg = a[:, 0, None, None, None], a[:, 1, None, None, None]
    else:
        bg, fg = (float(v) for v in flat.split(","))
    x = m * fg + (1 - m) * bg
    m = torch.from_numpy(m)
    return {"x": torch.from_numpy(x.astype(np.float32)), "masks": torch.cat([1 - m, m], 1),
            "y": torch.from_numpy(labels[pick].astype(np.int64))}


def textured_images(n: int, split: str, options: dict | None = None) -> dict[str, torch.Tensor]:
    from rladder.registry import get_registry

    reg = get_registry()
    table = {"name": "textured_mnist", split: n, **(options or {})}
    data = reg.build("dataset", reg.resolved_table("dataset", table))
    stored = {k: torch.from_numpy(v) for k, v in data.arrays(split).items()}
    return data.to_batch(stored)


def group_spread(t: torch.Tensor, k: int) -> float:
    """RMS over the K groups of (a group's tensor - the mean over groups), relative to the tensor's RMS."""
    g = t.detach().unflatten(0, (-1, k)).float()
    return float(((g - g.mean(1, keepdim=True)).pow(2).mean().sqrt() / g.pow(2).mean().sqrt().clamp(min=1e-12)))


@torch.no_grad()
def evaluate(model, data, iterations: int, k: int) -> dict[str, object]:
    from rladder.plugins import grouping_tasks as GT

    was = model.training
    model.eval()
    x, masks = data["x"], data["masks"]
    seen = {}

    def keep(name, which):
        def hook(mod, inputs, output):
            seen.setdefault(name, output if which == "out" else inputs[0])     # the first iteration's
        return hook
    hooks = [model.project.register_forward_hook(keep("proj", "out")),
             model.to_mask.register_forward_hook(keep("d0", "in"))]
    out, _ = model(x, steps=iterations)
    for h in hooks:
        h.remove()
    z, a = out["heads.recon"], out["heads.mask_logits"]
    v = out["heads.variance"].view(*z.shape[:2], *([1] * (z.dim() - 2)))
    nll = GT.mixture_nll(x[:, None, None], z, a, v).flatten(2).mean(2).mean(0)
    ami = []
    for t in range(iterations):
        s, valid = GT.ami_scores(masks, a[:, t])
        ami.append(float(s[valid].mean()))
    bright = (x > 0.5).float()                                 # do the groups split the pixels by intensity?
    s, valid = GT.ami_scores(torch.cat([1 - bright, bright], 1), a[:, -1])
    model.train(was)
    return {"ami": ami, "ami_intensity": float(s[valid].mean()), "nll": nll.tolist(),
            "v": float(out["heads.variance"][0, 0]),
            "spread_proj": group_spread(seen["proj"], k), "spread_d0": group_spread(seen["d0"], k),
            "spread_logits": group_spread(a[:, 0].flatten(0, 1), k)}


def width_depth(text: str) -> tuple[int, int]:
    """``--plain``'s 'WIDTH,DEPTH' as two positive integers (argparse reports the error)."""
    try:
        width, depth = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTH,DEPTH such as 32,7, got {text!r}") from None
    if width < 1 or depth < 1:
        raise argparse.ArgumentTypeError(f"WIDTH and DEPTH must be positive, got {text!r}")
    return width, depth


def plain_segmenter(width: int, depth: int) -> torch.nn.Module:
    """DEPTH dilated 3x3 convs (receptive field 37 pixels at depth 7: 1 + 2 x the summed dilations) and a 1x1 conv to one logit."""
    from torch import nn

    layers, c = [], 1
    for i in range(depth):
        d = (1, 1, 2, 4, 8)[i] if i < 5 else 1
        layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.GroupNorm(min(4, width), width), nn.ReLU()]
        c = width
    return nn.Sequential(*layers, nn.Conv2d(c, 1, 1))


def train_plain(args, train: dict, val: dict) -> None:
    """``--plain``: the supervised segmentation bound (see the module docstring)."""
    import torch.nn.functional as F
    from rladder.plugins import grouping_tasks as GT

    width, depth = args.plain
    net = plain_segmenter(width, depth)
    print(f"plain segmenter: width {width}, depth {depth}, parameters {sum(p.numel() for p in net.parameters()):,}")
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    start, n = time.time(), len(train["x"])
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            net.eval()
            with torch.no_grad():
                logit = net(val["x"])
            net.train()
            scores, valid = GT.ami_scores(val["masks"], torch.stack([-logit, logit], 1))
            right = ((logit[:, 0] > 0) == (val["masks"][:, 1] > 0.5)).float().mean()
            print(f"step {step:5d}  {time.time() - start:6.0f} s  AMI {scores[valid].mean():.3f}  "
                  f"pixels right {float(right):.3f}", flush=True)
        if step == args.steps:
            break
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        clean = train["x"][idx]
        logit = net(clean + args.noise * torch.randn_like(clean))[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, train["masks"][idx][:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flat", default="0.2,0.8", help="'A,B': background A, digit B; 'random': per image")
    ap.add_argument("--textured", action="store_true", help="textured MNIST instead of flat intensities")
    ap.add_argument("--data", default="{}", help="textured MNIST: JSON merged into its dataset options")
    ap.add_argument("--shape", choices=("digit", "pixels"), default="digit",
                    help="flat images: the region of the second intensity (pixels: each pixel at random)")
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--channels", default="8,16,16")
    ap.add_argument("--top", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--recurrent", action="store_true", help="RTagger's recurrent ladder (default: Tagger's)")
    ap.add_argument("--model", default="{}", help="JSON merged into the rtagger options (ladder merged too)")
    ap.add_argument("--v-init", type=float, help="start the learned variance v here (Tagger: 1 + sqrt 2)")
    ap.add_argument("--supervised-masks", action="store_true",
                    help="add a permutation-free cross-entropy of the masks against the truth (a capacity check)")
    ap.add_argument("--supervised-until", type=int, metavar="N",
                    help="with --supervised-masks: drop the mask cost after step N (does the mixture cost alone "
                         "keep a grouping it was taught?)")
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plain", metavar="WIDTH,DEPTH", type=width_depth,
                    help="train a plain supervised segmenter instead of a Tagger (the data's bound)")
    ap.add_argument("--picture", type=Path, help="draw Fig. 6 of held-out images here at the end")
    args = ap.parse_args()
    if args.supervised_until is not None and not args.supervised_masks:
        ap.error("--supervised-until needs --supervised-masks (it says when the mask cost stops)")
    if args.data != "{}" and not args.textured:
        ap.error("--data sets textured MNIST's options; add --textured")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from rladder.core import DataSpec, build_model
    from rladder.plugins import grouping_tasks as GT

    if args.textured:
        options = json.loads(args.data)
        train, val = textured_images(args.train, "train", options), textured_images(args.val, "val", options)
    else:
        train = flat_images(args.train, "train", args.flat, 1, args.shape)
        val = flat_images(args.val, "val", args.flat, 2, args.shape)
    if args.plain:
        return train_plain(args, train, val)
    extra = json.loads(args.model)
    ladder = {"name": "grouping_ladder", "channels": [int(c) for c in args.channels.split(",")], "top": args.top,
              "recurrent": args.recurrent, "feedback": args.recurrent, **extra.pop("ladder", {})}
    table = {"name": "rtagger", "groups": args.groups, "hidden": args.hidden, "noise_std": args.noise,
             "ladder": ladder, **extra}
    spec = DataSpec("video", (1, 28, 28), args.iterations, {"x": "", "masks": ""}, static=True)
    model = build_model(table, spec)
    if args.v_init:
        with torch.no_grad():
            model.variance_w.fill_(float(np.sinh(np.log(args.v_init))))
    print("model:", json.dumps(table), f"parameters {sum(p.numel() for p in model.parameters()):,}", flush=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    start, n = time.time(), len(train["x"])
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            r = evaluate(model, val, args.iterations, args.groups)
            print(f"step {step:5d}  {time.time() - start:6.0f} s  AMI " + " ".join(f"{a:.3f}" for a in r["ami"])
                  + f" (last vs x > 0.5: {r['ami_intensity']:.3f})  nll " + " ".join(f"{c:.3f}" for c in r["nll"])
                  + f"  v {r['v']:.3f}  spread it.1: proj "
                  f"{r['spread_proj']:.3f} d0 {r['spread_d0']:.3f} logits {r['spread_logits']:.3f}", flush=True)
        if step == args.steps:
            break
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        clean = train["x"][idx]
        out, _ = model(clean + args.noise * torch.randn_like(clean), steps=args.iterations)
        z, a = out["heads.recon"], out["heads.mask_logits"]
        v = out["heads.variance"].view(*z.shape[:2], *([1] * (z.dim() - 2)))
        loss = GT.mixture_nll(clean[:, None, None], z, a, v).mean()
        if args.supervised_masks and (args.supervised_until is None or step < args.supervised_until):
            loss = loss + GT.taught_masks_cost(a, train["masks"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if args.picture:
        model.eval()
        with torch.no_grad():
            out, _ = model(val["x"][:3], steps=args.iterations)
        fig = GT.draw_iterations({k: t[:3] for k, t in val.items()}, out["heads.recon"],
                                 torch.softmax(out["heads.mask_logits"], 2))
        fig.savefig(args.picture, dpi=110)
        print("picture:", args.picture)


if __name__ == "__main__":
    main()

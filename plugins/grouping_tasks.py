"""Tasks of perceptual grouping (paper section 4, spec sections 5.2, 5.3, 6.4, 6.6) on RTagger's outputs.

Outputs read (layouts in rladder.plugins.rtagger): ``heads.recon`` z (B, T, K, C, *S),
``heads.mask_logits`` a (B, T, K, 1, *S) with pi = softmax over K, ``heads.variance`` v (B, T),
``heads.class`` (B, T, K, classes + 1).

* ``tagger_denoise`` (spec 6.4): at every step i, the mixture cost of the clean input
  ``C_i = -mean log sum_k pi_k N(x | z_k, v)`` (``log(pi + 1e-5)``, the constant 1/2 log 2 pi dropped),
  averaged over steps; the model sees the corrupted input (``train.input_noise``).
  Metrics: ``nll`` (last step), ``nll_t<i>``, ``mse`` (x1e-5) of the mixture mean sum_k pi_k z_k.
* ``mixture_predict`` (spec 5.3): the same cost for the next frame ``x_next`` of a video, at every
  frame; the prediction is the mixture mean. Metrics: ``prediction_error`` (MSE x1e-5) beside
  ``copy_last`` (the current frame as the prediction), ``nll``.
* ``group_classify`` (spec 5.2, Tagger's collapse): per group a softmax over classes + "none";
  "none" is dropped, the rest normalised jointly over (groups, classes) and summed over groups:
  ``p(c) = sum_k p_k(c) / sum_k sum_c' p_k(c')``. Cross-entropy at the last step, or averaged over
  every step (``every_step``); labelled samples only. Metrics: ``error`` (%) at the last step and
  ``error_t<i>`` at every step, ``ce``.
* ``ami`` (spec 6.6): adjusted mutual information (scikit-learn, ``average_method = "max"`` as in
  Tagger's scikit-learn 0.17) between the true groups (argmax of the ground-truth masks) and the
  found ones (argmax_k a_k), per sample and step, over the pixels whose ground-truth mask maximum
  exceeds 0.9 (soft edges, and for moving MNIST background and overlaps, whose masks are all 0,
  are left out); a sample without such pixels is skipped. Static targets ``(B, G, *S)`` are
  compared at every step, per-step targets ``(B, T, G, *S)`` step by step. Metrics: ``ami_t<i>``,
  ``ami`` (the last step, or the mean over steps with ``average = "mean"``). No cost.
* ``taught_masks`` (a probe, not in the paper): the cross-entropy of pi against the true segmentation,
  under the best assignment of true groups to groups per sample, on the same sure pixels as ``ami``. With a
  weight that fades (``weight_ramp_from`` above 1) it asks whether the model's own costs keep a grouping once
  it has been taught one. Metric: ``ce``.

Figures: ``tagger_denoise`` draws ``grouping.png`` (like the paper's Fig. 6: per step the
reconstruction of every group and the input coloured by group), ``mixture_predict`` draws
``grouping_video.png`` (like Fig. 7: frames, then next-frame predictions coloured by group, the
last ones free-running on the model's own predictions).
"""

from __future__ import annotations

import itertools
from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rladder.core import Metric, Needs, Task, TaskOptions, reduce_sum
from rladder.registry import Component, ContractError, hookimpl, option

PALETTE = np.array([[0.12, 0.47, 0.71], [1.0, 0.5, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
                    [0.58, 0.4, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.5, 0.5, 0.5]])


def mixture_nll(x: Tensor, z: Tensor, logits: Tensor, v: Tensor, dim: int = 2) -> Tensor:
    """``-log sum_k pi_k N(x | z_k, v)`` per element, Tagger's formula (``log(pi + 1e-5)``, 1/2 log 2 pi dropped).

    ``z`` (..., K, C, *S) with the groups on axis ``dim``, ``logits`` (..., K, 1, *S) (pi = their softmax
    over ``dim``), ``x`` and ``v`` broadcastable to ``z``; the result is ``z``'s shape without axis ``dim``."""
    log_pi = torch.log(torch.softmax(logits, dim) + 1e-5)
    log_p = -0.5 * (torch.log(v) + (x - z) ** 2 / v) + log_pi
    return -torch.logsumexp(log_p, dim)


def collapse_classes(logits: Tensor) -> Tensor:
    """Tagger's collapse: per-group logits (..., K, classes + 1), "none" last -> log p(class) (..., classes)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)[..., :-1]                 # drop "none"
    joint = log_p.flatten(-2).logsumexp(-1, keepdim=True).unsqueeze(-1)       # normaliser over (groups, classes)
    return (log_p - joint).logsumexp(-2)                                         # sum over groups


def mixture_mean(outputs, recon: str, masks: str) -> Tensor:
    """sum_k pi_k z_k (B, T, C, *S)."""
    z, a = outputs[f"heads.{recon}"].float(), outputs[f"heads.{masks}"].float()
    return (torch.softmax(a, dim=2) * z).sum(2)


# --------------------------------------------------------------------------- mixture costs
@attrs.frozen
class MixtureOptions(TaskOptions):
    recon: str = option("recon", help="Head with the reconstructions z_k (B, T, K, C, *S).")
    masks: str = option("mask_logits", help="Head with the mask logits (B, T, K, 1, *S).")
    variance: str = option("variance", help="Head with the variance v (B, T).")


class MixtureCost(Task):
    """Tagger's mixture cost against a target: the clean input (denoise) or the next frame (predict)."""

    target = "x_uncorrupted"
    noise = True

    def __init__(self, options: MixtureOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o, self.spec = options, spec
        self.steps = spec.seq_len
        self.register_buffer("sums", torch.zeros(3, spec.seq_len, dtype=torch.float64), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64), persistent=False)
        self._model: tuple = ()

    def needs(self) -> Needs:
        heads = tuple(f"heads.{h}" for h in (self.o.recon, self.o.masks, self.o.variance))
        return Needs(heads, (self.target,), noise=self.noise)

    def bind(self, model) -> None:
        self._model = (model,)          # a tuple: the model is not a sub-module of the task

    def _target(self, batch) -> Tensor:
        x = batch[self.target].float()
        return x.unsqueeze(1) if self.spec.static else x                    # (B, T or 1, C, *S)

    def costs(self, outputs, batch) -> Tensor:
        """The mixture cost per sample and step, (B, T)."""
        z, a = outputs[f"heads.{self.o.recon}"].float(), outputs[f"heads.{self.o.masks}"].float()
        v = outputs[f"heads.{self.o.variance}"].float().view(*z.shape[:2], *([1] * (z.dim() - 2)))
        x = self._target(batch).unsqueeze(2)                                  # a group axis of size 1
        return mixture_nll(x, z, a, v).flatten(2).mean(2)

    def loss(self, outputs, batch):
        return self.costs(outputs, batch).mean()

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        nll = self.costs(outputs, batch)
        target = self._target(batch)
        mse = ((mixture_mean(outputs, self.o.recon, self.o.masks) - target) ** 2).flatten(2).mean(2)
        copy = ((batch["x"].float() - target) ** 2).flatten(2).mean(2) if not self.spec.static else mse * 0
        self.sums += torch.stack([nll.sum(0), mse.sum(0), copy.sum(0)]).double()
        self.count += nll.shape[0]

    def compute_metrics(self):
        sums, count = reduce_sum(self.sums, self.count)
        mean = (sums / count.clamp(min=1)).cpu().tolist()
        out = {"nll": mean[0][-1], **{f"nll_t{t + 1}": v for t, v in enumerate(mean[0])}}
        if self.spec.static:
            out.update({"mse": 1e5 * mean[1][-1]})
        else:
            out.update({"prediction_error": 1e5 * float(np.mean(mean[1])),
                        "copy_last": 1e5 * float(np.mean(mean[2]))})
        return out

    def reset_metrics(self):
        self.sums.zero_()
        self.count.zero_()

    def metrics(self):
        return [Metric("nll", "mixture cost (last step)", "nats/pixel")]

    def predictions(self, outputs):
        heads = outputs.keys()
        if f"heads.{self.o.recon}" not in heads or f"heads.{self.o.masks}" not in heads:
            return {}
        return {"mixture": mixture_mean(outputs, self.o.recon, self.o.masks),
                "groups": torch.softmax(outputs[f"heads.{self.o.masks}"].float(), dim=2)}

    def figures(self, batch, outputs, predictions):
        if "groups" not in predictions:
            return {}
        return {"grouping": draw_iterations(batch, outputs[f"heads.{self.o.recon}"].float(), predictions["groups"])}


class MixturePredict(MixtureCost):
    target = "x_next"
    noise = False

    def __init__(self, options: MixtureOptions, spec, label: str):
        if spec.static:
            raise ContractError(f"tasks.{label}: next-frame prediction needs a video (the data is static)")
        super().__init__(options, spec, label)

    def metrics(self):
        return [Metric("prediction_error", "prediction error", "x1e-5", baseline="copy_last")]

    def predictions(self, outputs):
        out = super().predictions(outputs)
        if out:
            out["next_frame"] = out.pop("mixture").clamp(0, 1)
        return out

    def next_input(self, predictions):
        return predictions.get("next_frame")

    def figures(self, batch, outputs, predictions):
        if not self._model:
            return {}
        return {"grouping_video": draw_video(self._model[0], batch, self.o)}


# --------------------------------------------------------------------------- classification
@attrs.frozen
class GroupClassifyOptions(TaskOptions):
    head: str = option("class", help="Head with the per-group class logits (B, T, K, classes + 1), 'none' last.")
    target: str = option("y", help="Batch key of the labels (B,) int64.")
    every_step: bool = option(False, help="Average the cost over every iteration instead of the last one "
                                          "(spec 5.2: the last; the OMM RLadder learned faster with every step).")


class GroupClassify(Task):
    def __init__(self, options: GroupClassifyOptions, spec, label: str):
        super().__init__(label, options.weight)
        if not spec.num_classes:
            raise ContractError(f"tasks.{label}: classification needs a dataset with classes")
        self.o = options
        self.register_buffer("wrong", torch.zeros(spec.seq_len, dtype=torch.float64), persistent=False)
        self.register_buffer("ce", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64), persistent=False)

    def needs(self) -> Needs:
        return Needs((f"heads.{self.o.head}",), (self.o.target,), supervised=True)

    def loss(self, outputs, batch):
        log_p, y = collapse_classes(outputs[f"heads.{self.o.head}"]), batch[self.o.target]
        mask = batch.get("label_mask")
        if mask is not None:
            if not bool(mask.any()):
                return log_p.sum() * 0.0
            log_p, y = log_p[mask], y[mask]
        if self.o.every_step:
            return F.nll_loss(log_p.flatten(0, 1), y.repeat_interleave(log_p.shape[1]))
        return F.nll_loss(log_p[:, -1], y)

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        log_p, y = collapse_classes(outputs[f"heads.{self.o.head}"]), batch[self.o.target]
        self.wrong += (log_p.argmax(-1) != y[:, None]).sum(0).double()
        self.ce += F.nll_loss(log_p[:, -1], y, reduction="sum").double()
        self.count += len(y)

    def compute_metrics(self):
        wrong, ce, count = reduce_sum(self.wrong, self.ce, self.count)
        errors = (100 * wrong / count.clamp(min=1)).cpu().tolist()
        return {"error": errors[-1], "ce": float((ce / count.clamp(min=1)).cpu()),
                **{f"error_t{t + 1}": e for t, e in enumerate(errors)}}

    def reset_metrics(self):
        for t in (self.wrong, self.ce, self.count):
            t.zero_()

    def metrics(self):
        return [Metric("error", "classification error", "%")]

    def predictions(self, outputs):
        key = f"heads.{self.o.head}"
        return {"class_probs": collapse_classes(outputs[key]).exp()} if key in outputs else {}


# --------------------------------------------------------------------------- AMI
def _generalized_average(u: Tensor, v: Tensor, method: str) -> Tensor:
    if method == "max":
        return torch.maximum(u, v)
    if method == "min":
        return torch.minimum(u, v)
    if method == "geometric":
        return torch.sqrt(u * v)
    return (u + v) / 2


def batched_ami(true: Tensor, pred: Tensor, keep: Tensor, average_method: str = "max") -> Tensor:
    """scikit-learn's ``adjusted_mutual_info_score`` for many samples at once, in float64.

    ``true`` and ``pred`` (N, P) integer labels, ``keep`` (N, P) bool (the pixels that count). The
    same formulas and special cases as scikit-learn 1.x: MI from the contingency table, the expected
    MI under the hypergeometric model (Vinh et al. 2010), ``(MI - EMI) / (avg(H_true, H_pred) - EMI)``
    with the signs kept away from 0 by float64 eps; 1.0 when both labelings have one cluster, 0.0
    when only one of them has. tests/test_rtagger.py checks it against scikit-learn."""
    eps = torch.finfo(torch.float64).eps
    r, c = int(true.max()) + 1, int(pred.max()) + 1
    cont = torch.zeros(len(true), r * c, dtype=torch.float64)
    cont.scatter_add_(1, (true * c + pred).long(), keep.double())
    cont = cont.view(-1, r, c)
    n = cont.sum((1, 2))
    a, b = cont.sum(2), cont.sum(1)                                         # row and column sums
    n3, a3, b3 = n[:, None, None], a[:, :, None], b[:, None, :]
    logs = lambda t: torch.log(t.clamp(min=1))  # noqa: E731 - log, 0 where the count is 0
    mi_terms = torch.where(cont > 0, cont / n3 * (logs(cont) + logs(n3) - logs(a3) - logs(b3)), 0.0)
    mi = torch.where(mi_terms.abs() < eps, 0.0, mi_terms).sum((1, 2)).clamp(min=0)
    h = lambda s: -(torch.where(s > 0, s / n[:, None] * (logs(s) - logs(n[:, None])), 0.0)).sum(1)  # noqa: E731
    h_true, h_pred = h(a), h(b)
    # expected MI: sum over i, j and nij = max(1, a_i + b_j - N) .. min(a_i, b_j)
    v = torch.arange(1, int(torch.minimum(a.max(), b.max()).item()) + 1, dtype=torch.float64)
    a4, b4, n4, v4 = a3[..., None], b3[..., None], n3[..., None], v.view(1, 1, 1, -1)
    valid = (v4 >= a4 + b4 - n4) & (v4 <= torch.minimum(a4, b4))
    lg = lambda t: torch.lgamma(t.clamp(min=0) + 1)  # noqa: E731
    gln = (lg(a4) + lg(b4) + lg(n4 - a4) + lg(n4 - b4) - lg(v4) - lg(n4) - lg(a4 - v4) - lg(b4 - v4)
           - lg(n4 - a4 - b4 + v4))
    terms = v4 / n4 * (torch.log(n4.clamp(min=1)) + torch.log(v4) - logs(a4) - logs(b4)) * torch.exp(gln)
    emi = torch.where(valid, terms, 0.0).sum((1, 2, 3))
    classes, clusters = (a > 0).sum(1), (b > 0).sum(1)
    emi = torch.where((classes == 1) | (clusters == 1), 0.0, emi)
    den = _generalized_average(h_true, h_pred, average_method) - emi
    den = torch.where(den < 0, den.clamp(max=-eps), den.clamp(min=eps))
    num = mi - emi
    num = torch.where(num < 0, num.clamp(max=-eps), num.clamp(min=eps))
    ami = num / den
    ami = torch.where((classes == 1) | (clusters == 1), 0.0, ami)
    return torch.where(classes == clusters, torch.where(classes <= 1, 1.0, ami), ami)


def ami_scores(true_masks: Tensor, logits: Tensor, threshold: float = 0.9, average_method: str = "max",
               backend: str = "batched", chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per sample: AMI of argmax(true_masks) (N, G, *S) against argmax_k(logits) (N, K, 1, *S) over the
    pixels whose true mask maximum exceeds ``threshold``; returns (scores, valid) arrays of N (a sample
    without such pixels is not valid). ``backend = "sklearn"`` calls scikit-learn per sample (slow:
    about 6 ms a call), ``"batched"`` computes the same numbers for many samples at once."""
    true = true_masks.float().flatten(2).cpu()
    keep = true.max(1).values > threshold
    t_lab = true.argmax(1)
    p_lab = logits.float().flatten(2).argmax(1).cpu()
    valid = keep.any(1).numpy()
    scores = np.zeros(len(true))
    if backend == "sklearn":
        from sklearn.metrics import adjusted_mutual_info_score

        for n in np.flatnonzero(valid):
            scores[n] = adjusted_mutual_info_score(t_lab[n][keep[n]].numpy(), p_lab[n][keep[n]].numpy(),
                                                   average_method=average_method)
        return scores, valid
    for s in range(0, len(true), chunk):
        scores[s:s + chunk] = batched_ami(t_lab[s:s + chunk], p_lab[s:s + chunk], keep[s:s + chunk],
                                          average_method).numpy()
    return np.where(valid, scores, 0.0), valid


@attrs.frozen
class AMIOptions(TaskOptions):
    masks: str = option("mask_logits", help="Head with the mask logits (B, T, K, 1, *S).")
    target: str = option("masks", help="Batch key of the ground-truth masks: (B, G, *S) static, or (B, T, G, *S).")
    threshold: float = option(0.9, help="Only pixels whose ground-truth mask maximum exceeds this count.")
    average: Literal["last", "mean"] = option("last", help="Headline 'ami': the last step's, or the mean over steps.")
    average_method: Literal["max", "arithmetic", "geometric", "min"] = option(
        "max", help="scikit-learn's normalisation of the AMI (Tagger's scikit-learn 0.17 used max).")
    backend: Literal["batched", "sklearn"] = option(
        "batched", help="batched: scikit-learn's formulas for many samples at once; sklearn: one call per sample.")


def canvas_halves(like: Tensor, axis: int = -1) -> Tensor:
    """Logits (N, 2, 1, *S) of a fixed split of every image of ``like`` (N, K, 1, *S) into two halves
    along spatial ``axis`` (-1: left / right, -2: top / bottom): a grouping that follows nothing but position."""
    size = like.shape[axis]
    first = (torch.arange(size, device=like.device) < size // 2).to(like.dtype)
    first = first.view(size, *([1] * (-axis - 1))).expand(like.shape[0], 1, 1, *like.shape[3:])
    return torch.cat([first, 1 - first], 1)


def sequence_ami_scores(true_masks: Tensor, logits: Tensor, **options) -> tuple[np.ndarray, np.ndarray]:
    """``ami_scores`` per sequence over the pixels of all its frames: ``true_masks`` (B, T, G, *S) against
    ``logits`` (B, T, K, 1, *S), the frame axis taken as one more spatial axis."""
    order = (0, 2, 3, 1, *range(4, logits.dim()))
    return ami_scores(true_masks.transpose(1, 2), logits.permute(order), **options)


class AMI(Task):
    """AMI per step (``ami_t<k>``) and its headline (``ami``). For video targets, (B, T, G, *S), also
    ``ami_sequence``, one AMI per sequence over the pixels of all its frames (a digit must keep its
    group from frame to frame to score), and ``ami_halves``, the per-frame AMI that fixed left and
    right halves of the canvas get on the same pixels: two objects at different places are split by
    any partition of the canvas, so a per-frame AMI means grouping only above that reference
    (docs/table4.md; ``tools/video_grouping_check.py`` gives more)."""

    def __init__(self, options: AMIOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o, self.static = options, spec.static
        self.register_buffer("sums", torch.zeros(spec.seq_len, dtype=torch.float64), persistent=False)
        self.register_buffer("counts", torch.zeros(spec.seq_len, dtype=torch.float64), persistent=False)
        # video only: [sum, count] of the sequence AMI and of the halves' per-frame AMI
        self.register_buffer("video", torch.zeros(2, 2, dtype=torch.float64), persistent=False)

    def needs(self) -> Needs:
        return Needs((f"heads.{self.o.masks}",), (self.o.target,))

    def loss(self, outputs, batch):
        return outputs[f"heads.{self.o.masks}"].sum() * 0.0           # no cost (a metric), the graph kept

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        logits, true = outputs[f"heads.{self.o.masks}"], batch[self.o.target]
        b, t = logits.shape[:2]
        video = true.dim() != logits.dim() - 2
        if not video:                                                          # static: the same at every step
            true = true.unsqueeze(1).expand(b, t, *true.shape[1:])
        kw = dict(threshold=self.o.threshold, average_method=self.o.average_method, backend=self.o.backend)
        scores, valid = ami_scores(true.flatten(0, 1), logits.flatten(0, 1), **kw)
        self.sums += torch.from_numpy(scores.reshape(b, t).sum(0)).to(self.sums)
        self.counts += torch.from_numpy(valid.reshape(b, t).sum(0).astype(np.float64)).to(self.counts)
        if video:
            seq, seq_valid = sequence_ami_scores(true, logits, **kw)
            halves, halves_valid = ami_scores(true.flatten(0, 1), canvas_halves(logits.flatten(0, 1)), **kw)
            self.video += torch.tensor([[seq.sum(), seq_valid.sum()], [halves.sum(), halves_valid.sum()]],
                                       dtype=torch.float64, device=self.video.device)

    def compute_metrics(self):
        sums, counts, video = reduce_sum(self.sums, self.counts, self.video)
        per_step = (sums / counts.clamp(min=1)).cpu().tolist()
        headline = per_step[-1] if self.o.average == "last" else float((sums.sum() / counts.sum().clamp(min=1)).cpu())
        result = {"ami": headline, **{f"ami_t{t + 1}": a for t, a in enumerate(per_step)}}
        if video[:, 1].sum() > 0:
            seq, halves = (video[:, 0] / video[:, 1].clamp(min=1)).cpu().tolist()
            result.update(ami_sequence=seq, ami_halves=halves)
        return result

    def reset_metrics(self):
        self.sums.zero_()
        self.counts.zero_()
        self.video.zero_()

    def metrics(self):
        return [Metric("ami", "segmentation AMI", better="max")]


# --------------------------------------------------------------------------- taught masks (a probe)
def taught_masks_cost(logits: Tensor, true_masks: Tensor, threshold: float = 0.9) -> Tensor:
    """Per sample, the cross-entropy of the groups pi = softmax_K(logits) against the true groups under the
    best assignment of the G true groups to G of the K groups (one assignment per sample, the same at
    every step), over the pixels whose true mask maximum exceeds ``threshold``; the mean over samples.

    ``logits`` (B, T, K, 1, *S); ``true_masks`` (B, G, *S) (static: the same at every step) or
    (B, T, G, *S)."""
    b, t, k = logits.shape[:3]
    if true_masks.dim() == logits.dim() - 2:
        true_masks = true_masks.unsqueeze(1).expand(b, t, *true_masks.shape[1:])
    g = true_masks.shape[2]
    if g > k:
        raise ContractError(f"the data has {g} true groups and the model {k}: teaching the masks needs "
                            f"model.groups >= {g}")
    log_pi = torch.log_softmax(logits.float(), 2)[:, :, :, 0].flatten(3)                  # (B, T, K, P)
    true = true_masks.float().flatten(3)                                                  # (B, T, G, P)
    keep = (true.max(2).values > threshold).float()                                       # (B, T, P)
    label = true.argmax(2)                                                                # (B, T, P)
    count = keep.sum((1, 2)).clamp(min=1)
    costs = []
    for perm in itertools.permutations(range(k), g):
        own = torch.tensor(perm, device=logits.device)[label]                             # each pixel's group
        ll = log_pi.gather(2, own.unsqueeze(2)).squeeze(2)                               # (B, T, P)
        costs.append(-(ll * keep).sum((1, 2)) / count)
    return torch.stack(costs, 1).min(1).values.mean()


@attrs.frozen
class TaughtMasksOptions(TaskOptions):
    masks: str = option("mask_logits", help="Head with the mask logits (B, T, K, 1, *S).")
    target: str = option("masks", help="Batch key of the true masks: (B, G, *S) static, or (B, T, G, *S) "
                                       "('masks_next' for moving MNIST's predicted frame).")
    threshold: float = option(0.9, help="Only pixels whose true mask maximum exceeds this are taught.")


class TaughtMasks(Task):
    """Teaches the groups the true segmentation (``taught_masks_cost``): a probe, not the paper's method.
    With a decreasing weight (``weight_ramp_from`` above 1) it tests whether the model's own costs keep a
    grouping once the teacher fades (docs/table4.md). Metric: ``ce``, the cost."""

    def __init__(self, options: TaughtMasksOptions, spec, label: str):
        super().__init__(label, options.weight)
        self.o = options
        self.register_buffer("sums", torch.zeros(2, dtype=torch.float64), persistent=False)

    def needs(self) -> Needs:
        return Needs((f"heads.{self.o.masks}",), (self.o.target,))

    def loss(self, outputs, batch):
        return taught_masks_cost(outputs[f"heads.{self.o.masks}"], batch[self.o.target], self.o.threshold)

    @torch.no_grad()
    def update_metrics(self, outputs, batch):
        cost = self.loss(outputs, batch)
        n = outputs[f"heads.{self.o.masks}"].shape[0]
        self.sums += torch.stack([cost.double() * n, torch.tensor(float(n), dtype=torch.float64)]).to(self.sums)

    def compute_metrics(self):
        (sums,) = reduce_sum(self.sums)
        return {"ce": float(sums[0] / sums[1].clamp(min=1))}

    def reset_metrics(self):
        self.sums.zero_()

    def metrics(self):
        return [Metric("ce", "cross-entropy of the groups against the true masks", "nats/pixel")]


# --------------------------------------------------------------------------- pictures
def colour_by_group(image: np.ndarray, groups: np.ndarray, floor: float = 0.3) -> np.ndarray:
    """An (H, W) image in [0, 1] coloured by soft groups (K, H, W): RGB (H, W, 3)."""
    tint = np.einsum("khw,kc->hwc", groups, PALETTE[np.arange(len(groups)) % len(PALETTE)])
    return np.clip((floor + (1 - floor) * image[..., None]) * tint, 0, 1)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw_iterations(batch, recon: Tensor, groups: Tensor, samples: int = 3):
    """Fig. 6: per sample and step, the input, the true grouping, each group's reconstruction z_k and
    the input coloured by the found grouping pi."""
    plt = _plt()
    x = batch["x"].float()[:samples, 0].clamp(0, 1).numpy()
    true = batch.get("masks")
    n, t, k = min(samples, len(x)), recon.shape[1], recon.shape[2]
    cols = ["input", "true groups"] + [f"z_{j + 1}" for j in range(k)] + ["input coloured by pi"]
    fig, axes = plt.subplots(n * t, len(cols), figsize=(1.3 * len(cols), 1.35 * n * t + 1.3), squeeze=False)
    for i in range(n):
        for s in range(t):
            row = axes[i * t + s]
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
            row[0].imshow(x[i], cmap="gray", vmin=0, vmax=1)
            row[0].set_ylabel(f"sample {i + 1}\niteration {s + 1}", fontsize=6)
            if true is not None:
                row[1].imshow(colour_by_group(x[i], true[i].float().numpy()))
            else:
                row[1].axis("off")
            for j in range(k):
                row[2 + j].imshow(recon[i, s, j, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            row[-1].imshow(colour_by_group(x[i], groups[i, s, :, 0].numpy()))
            if i == 0 and s == 0:
                for ax, c in zip(row, cols):
                    ax.set_title(c, fontsize=7)
    fig.suptitle("One row per iteration. z_k: group k's reconstruction.\nColours: the groups pi (softmax of the "
                 "mask logits);\n'true groups': the ground truth, background and digit.", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.2 / fig.get_size_inches()[1]))
    return fig


@torch.no_grad()
def draw_video(model, batch, o: MixtureOptions, samples: int = 2, free: int = 6):
    """Fig. 7: the true frames, then the next-frame predictions coloured by group: from the true frames
    for the first ``context`` frames, then free-running on the model's own predictions."""
    plt = _plt()
    x, x_next = batch["x"].float()[:samples], batch["x_next"].float()[:samples]
    frames = torch.cat([x, x_next[:, -1:]], 1)                                 # frames 0..T
    total = frames.shape[1]
    free = min(free, max(1, total // 3))
    context = total - free
    heads = {f"heads.{o.recon}", f"heads.{o.masks}"}
    was = model.training
    model.eval()
    outputs, state = model(x[:, :context], keep=heads)
    preds = [mixture_mean(outputs, o.recon, o.masks)]
    groups = [torch.softmax(outputs[f"heads.{o.masks}"].float(), 2)]
    for _ in range(free - 1):
        step, state = model.step(preds[-1][:, -1].clamp(0, 1), state, keep=heads)
        step = {k: v.unsqueeze(1) for k, v in step.items()}
        preds.append(mixture_mean(step, o.recon, o.masks))
        groups.append(torch.softmax(step[f"heads.{o.masks}"].float(), 2))
    model.train(was)
    pred, grp = torch.cat(preds, 1).clamp(0, 1), torch.cat(groups, 1)          # predictions of frames 1..total-1
    n = len(x)
    fig, axes = plt.subplots(2 * n, total, figsize=(0.95 * total, 2.1 * n + 1.3), squeeze=False)
    for i in range(n):
        for f in range(total):
            top, bottom = axes[2 * i, f], axes[2 * i + 1, f]
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
            top.imshow(frames[i, f, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            top.set_title(f"{f}" + (" (future)" if f >= context else ""), fontsize=6)
            if f == 0:
                bottom.axis("off")
                continue
            bottom.imshow(colour_by_group(pred[i, f - 1, 0].numpy(), grp[i, f - 1, :, 0].numpy(), floor=0.0))
            if f > context:
                for side in bottom.spines.values():
                    side.set_color("red")
        axes[2 * i, 0].set_ylabel(f"sample {i + 1}\nframes", fontsize=6)
    fig.suptitle(f"Top: frames 0-{total - 1}; the model sees 0-{context - 1}.\nBottom: the prediction of each frame "
                 f"coloured by group;\nred frames are free-running (the model's own predictions fed back).",
                 fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 1.2 / fig.get_size_inches()[1]))
    return fig


# small runs the conformance kit (rladder.core.testing) checks the tasks in
_SMALL_RTAGGER = {"name": "rtagger", "hidden": 4, "ladder": {"name": "grouping_ladder", "channels": [4, 4], "top": 8}}
IMAGE_RUN = {"data": {"name": "textured_mnist", "train": 8, "val": 4, "test": 4, "iterations": 2},
             "model": _SMALL_RTAGGER}
VIDEO_RUN = {"data": {"name": "moving_mnist", "train": 8, "val": 4, "test": 4, "frames": 3, "size": 32,
                      "digit_size": 14}, "model": {**_SMALL_RTAGGER, "noise_std": 0.0}}


@hookimpl
def rladder_components():
    return [
        Component("task", "tagger_denoise", MixtureCost, MixtureOptions,
                  "Tagger's mixture denoising cost of the clean input at every iteration (spec 6.4).",
                  example=IMAGE_RUN),
        Component("task", "mixture_predict", MixturePredict, MixtureOptions,
                  "The next video frame as a mixture of the groups' predictions (paper 4.3).", example=VIDEO_RUN),
        Component("task", "group_classify", GroupClassify, GroupClassifyOptions,
                  "Class from per-group logits with a 'none' class, Tagger's collapse; cost at the last "
                  "step (or every step).",
                  example=IMAGE_RUN),
        Component("task", "ami", AMI, AMIOptions,
                  "Segmentation AMI per step (scikit-learn, Tagger's settings); a metric, no cost.", example=IMAGE_RUN),
        Component("task", "taught_masks", TaughtMasks, TaughtMasksOptions,
                  "Probe: cross-entropy of the groups against the true masks (best assignment per sample); "
                  "with a fading weight, does a taught grouping last?", example=IMAGE_RUN),
    ]

"""Recipe `table2`: semi-supervised Occluded Moving MNIST (paper section 3.1, Table 2).

Three models x three settings: (A) the 1k labelled sequences alone; (B) 1k labelled plus the
unlabelled rest, without Mean Teacher (only the RLadder's prediction task can use unlabelled
data, so the static classifier and the temporal baseline repeat their (A) run, as in the
paper); (C) with a Mean Teacher consistency cost at the top (the teacher's error is reported).
"""

from __future__ import annotations

from rladder.core import Cell, Recipe, Row, merge
from rladder.registry import Component, NoOptions, hookimpl

from .omm_recipes import BUDGETS as TABLE1_BUDGETS

A, B, C = "(A) 1k labelled", "(B) 1k + unlabelled, w/o MT", "(C) 1k + unlabelled, with MT"
ERROR, TEACHER = "classify/error", "mt/teacher/classify/error"
CLASSIFY, PREDICT = {"name": "classify", "every_step": True}, {"name": "next_step"}
MT = {"name": "mean_teacher", "weight": 10.0}


def run(model: str, tasks: dict, unlabeled: bool, data: dict | None = None) -> dict:
    config = {"data": {"name": "occluded_mnist", **(data or {})}, "model": {"name": model}, "tasks": tasks,
              "labels": {"count": 1000, "unlabeled": unlabeled, "fraction": 0.25},
              "train": {"best_metric": TEACHER if "mt" in tasks else ERROR}}
    if "mt" in tasks:
        config["train"]["input_noise"] = 0.1
    return config


def budgets() -> dict:
    out = {}
    for name, overlay in TABLE1_BUDGETS.items():
        out[name] = merge(overlay, {})
    out["smoke"] = merge(out["smoke"], {"labels": {"count": 40}})
    out["paper"] = merge(out["paper"], {"data": {"train": 50000}})
    return out


def mt_overlays(steps: int, decay: float | None = None) -> dict:
    mt = {"rampup_steps": max(1, steps // 5)}
    if decay is not None:
        mt.update(decay=decay, rampup_decay=decay)
    return {"tasks": {"mt": mt}}


def table2(options) -> Recipe:
    recon = {"input": "recon"}
    with_mt = {"classify": CLASSIFY, "mt": MT}
    mt_budget = {"smoke": mt_overlays(16, 0.9), "cpu": mt_overlays(1200, 0.99), "paper": mt_overlays(50000)}
    rows = (
        Row("static, 1k", "static_a", run("omm_static", {"classify": CLASSIFY}, False, recon), {A: ERROR}),
        Row("static, 1k + MT", "static_c", run("omm_static", with_mt, True, recon), {C: TEACHER},
            budgets=mt_budget),
        Row("temporal baseline, 1k", "temporal_a", run("omm_temporal_baseline", {"classify": CLASSIFY}, False),
            {A: ERROR}),
        Row("temporal baseline, 1k + MT", "temporal_c", run("omm_temporal_baseline", with_mt, True), {C: TEACHER},
            budgets=mt_budget),
        Row("RLadder, 1k", "rladder_a", run("omm_rladder", {"predict": PREDICT, "classify": CLASSIFY}, False),
            {A: ERROR}),
        Row("RLadder, 1k + unlabelled", "rladder_b",
            run("omm_rladder", {"predict": PREDICT, "classify": CLASSIFY}, True), {B: ERROR}),
        Row("RLadder, 1k + unlabelled + MT", "rladder_c",
            run("omm_rladder", {"predict": PREDICT, **with_mt}, True), {C: TEACHER}, budgets=mt_budget),
    )
    layout = (
        ("Optimal reconstruction + static classifier", {A: Cell("static_a", ERROR, "3.50 ± 0.28"),
                                                        B: Cell("static_a", ERROR, "3.50 ± 0.28"),
                                                        C: Cell("static_c", TEACHER, "1.34 ± 0.04")}),
        ("Temporal baseline", {A: Cell("temporal_a", ERROR, "10.86 ± 0.43"), B: Cell("temporal_a", ERROR, "10.86 ± 0.43"),
                               C: Cell("temporal_c", TEACHER, "3.14 ± 0.16")}),
        ("RLadder", {A: Cell("rladder_a", ERROR, "10.49 ± 0.81"), B: Cell("rladder_b", ERROR, "5.20 ± 0.77"),
                     C: Cell("rladder_c", TEACHER, "1.69 ± 0.14")}),
    )
    notes = ("Classification error (%) on the test set. (B) equals (A) for the two models without an unsupervised "
             "task (the paper's table repeats the number too). (C) reports the Mean Teacher's teacher.")
    return Recipe("Table 2: semi-supervised Occluded Moving MNIST", (A, B, C), rows, budgets(), notes, layout)


@hookimpl
def rladder_components():
    return [Component("recipe", "table2", table2, NoOptions,
                      "Paper Table 2: 1k labelled sequences, with unlabelled data and Mean Teacher.")]

"""Recipe `table1`: the rows of the paper's Table 1 (Occluded Moving MNIST, fully supervised).

Every row is a complete run config; the task ablations are configs (a row without a task), not
code. Budgets: ``smoke`` (CI, about a minute in all), ``cpu`` (under 30 minutes on 2 cores with
one seed; tiny widths) and ``paper`` (the paper's scale, spec section 4.1.3, for a GPU).
"""

from __future__ import annotations

from rladder.core import Recipe, Row
from rladder.registry import Component, NoOptions, hookimpl

ERROR, PRED = "Classification error (%)", "Prediction error (×10⁻⁵)"
METRICS = {ERROR: "classify/error", PRED: "predict/prediction_error"}
PREDICT = {"name": "next_step"}
CLASSIFY = {"name": "classify", "every_step": True}   # the belief at every step is trained (Fig. 4)


def run(model: str, tasks: dict, data: dict | None = None) -> dict:
    best = "classify/error" if "classify" in tasks else "predict/prediction_error"
    return {"data": {"name": "occluded_mnist", **(data or {})}, "model": {"name": model}, "tasks": tasks,
            "train": {"best_metric": best}}


BUDGETS = {
    "smoke": {"data": {"train": 192, "val": 64, "test": 128}, "model": {"channels": [4, 8, 8], "top": 16},
              "train": {"steps": 16, "batch_size": 16, "log_every": 8, "eval_every": 8, "checkpoint_every": 8,
                        "threads": 1}},
    "cpu": {"data": {"train": 10000, "val": 1000, "test": 2000}, "model": {"channels": [8, 16, 32], "top": 64},
            "train": {"steps": 1200, "batch_size": 16, "lr": 2e-3, "log_every": 100, "eval_every": 400,
                      "checkpoint_every": 400, "threads": 2}},
    "paper": {"data": {"train": 50000, "val": 10000, "test": 10000}, "model": {"channels": [32, 64, 128], "top": 128},
              "train": {"steps": 50000, "batch_size": 100, "lr": 1e-3, "log_every": 100, "eval_every": 2500,
                        "checkpoint_every": 2500}},
}


def table1(options) -> Recipe:
    both = {"predict": PREDICT, "classify": CLASSIFY}
    rows = (
        Row("Optimal reconstruction + static classifier", "static",
            run("omm_static", {"classify": CLASSIFY}, {"input": "recon"}), METRICS, {ERROR: "0.71 ± 0.03"}),
        Row("Temporal baseline", "temporal_baseline",
            run("omm_temporal_baseline", {"classify": CLASSIFY}), METRICS, {ERROR: "2.02 ± 0.16"}),
        Row("Hierarchical RNN (encoder only)", "hierarchical_rnn",
            run("omm_hierarchical_rnn", {"classify": CLASSIFY}), METRICS, {ERROR: "1.60 ± 0.05"}),
        Row("RLadder w/o prediction task", "rladder_no_prediction",
            run("omm_rladder", {"classify": CLASSIFY}), METRICS, {ERROR: "1.51 ± 0.21"}),
        Row("RLadder w/o decoder-to-encoder conn.", "rladder_no_feedback",
            run("omm_rladder_no_feedback", both), METRICS, {ERROR: "1.24 ± 0.05", PRED: "156.7 ± 0.4"}),
        Row("RLadder w/o classification task", "rladder_no_classification",
            run("omm_rladder", {"predict": PREDICT}), METRICS, {PRED: "155.2 ± 2.5"}),
        Row("RLadder", "rladder", run("omm_rladder", both), METRICS, {ERROR: "0.74 ± 0.09", PRED: "150.1 ± 0.1"}),
    )
    return Recipe("Table 1: Occluded Moving MNIST, fully supervised", (ERROR, PRED), rows, BUDGETS,
                  notes="Prediction error: per-pixel MSE of the predicted next occluded frame x 10^5 (spec 4.1.2).")


@hookimpl
def rladder_components():
    return [Component("recipe", "table1", table1, NoOptions,
                      "Paper Table 1: every Occluded Moving MNIST model and ablation, fully supervised.")]

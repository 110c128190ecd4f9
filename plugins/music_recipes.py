"""Recipe `table3`: the paper's Table 3 (polyphonic music, next-step NLL in nats per step; section 3.2).

Our rows (the RLadder, its no-decoder and no-feedback ablations, the marginal LSTM) train on the
Bach chorales of the music21 corpus (dataset ``bach_chorales``), the offline stand-in for JSB
Chorales: 351 chorales at eighth-note resolution, our own split. So the JSB numbers are comparable
in kind with the paper's (the BL2012 JSB set has 382 chorales at quarter-note resolution and its
own split), not exactly. Two trivial baselines come from a one-step run (their values depend on
the data only). The other columns need the BL2012 pickles: with ``RLADDER_BL2012`` set to a folder
holding them, every row is also trained on each data set found there.

Budgets: ``smoke`` (CI: a few pieces, a few steps), ``cpu`` (2 cores, one seed in under 30
minutes; docs/table3.md), ``gpu`` (the widths of configs/shapes/music_rladder.toml, longer,
transposition augmentation) and ``paper`` (twice as wide, for a GPU; the paper used 10 seeds).
The LSTM has about as many parameters as the RLadder of each budget.
"""

from __future__ import annotations

import os
from pathlib import Path

from rladder.core import Cell, Recipe, Row, row_config
from rladder.registry import Component, NoOptions, hookimpl

NLL = "predict/nll"
PREDICT = {"name": "next_step", "head": "notes", "report": "nll", "reduction": "sum"}
MISSING = "†"
JSB = "JSB Chorales"
BL2012 = {"Piano-midi.de": ("piano_midi", "Piano-midi.de.pickle"), "Nottingham": ("nottingham", "Nottingham.pickle"),
          "Muse": ("musedata", "MuseData.pickle"), JSB: ("jsb_chorales", "JSB Chorales.pickle")}
ROWS = (  # label, key, model, the paper's numbers (Piano-midi.de, Nottingham, Muse, JSB Chorales)
    ("RLadder", "rladder", "music_rladder", ("6.19 ± 0.02", "2.42 ± 0.03", "5.69 ± 0.02", "5.64 ± 0.02")),
    ("RLadder w/o decoder (hierarchical RNN)", "rladder_no_decoder", "music_rladder_no_decoder", ("–",) * 4),
    ("RLadder w/o decoder-to-encoder conn.", "rladder_no_feedback", "music_rladder_no_feedback", ("–",) * 4),
    ("LSTM (marginal)", "lstm", "music_lstm", ("6.866", "3.492", "–", "–")),
)
PAPER_ONLY = """The rest of the paper's Table 3 (NLL, lower is better):

| Model | Piano-midi.de | Nottingham | Muse | JSB Chorales |
|---|---|---|---|---|
| NADE masked | 7.42 | 3.32 | 6.48 | 8.51 |
| NADE | 7.05 | 2.89 | 5.54 | 7.59 |
| RNN-RBM | 7.09 | 2.39 | 6.01 | 6.27 |
| RNN-NADE (HF) | 7.05 | 2.31 | 5.60 | 5.56 |
| LSTM-NADE | 7.39 | 2.06 | 5.03 | 6.10 |
| TP-LSTM-NADE | 5.49 | 1.64 | 4.34 | 5.92 |
| BALSTM | 5.00 | 1.62 | 3.90 | 5.86 |
| RNN (marginal) | 7.88 | 3.87 | 7.43 | 8.76 |
| MUT1 (marginal) | 6.792 | 3.254 | – | – |"""


def run(model: str, data: dict | str = "bach_chorales") -> dict:
    return row_config(data, model, {"predict": PREDICT}, NLL, loader={"name": "chunked"})


SMOKE_TRAIN = {"steps": 4, "batch_size": 4, "log_every": 2, "eval_every": 4, "checkpoint_every": 4, "threads": 1}
BUDGETS = {
    "smoke": {"data": {"max_pieces": 4, "max_steps": 24}, "loader": {"chunk": 8},
              "model": {"channels": [2, 2, 2, 2], "top": 8}, "train": SMOKE_TRAIN},
    "cpu": {"loader": {"chunk": 32}, "model": {"channels": [8, 16, 16, 16], "top": 128},
            "train": {"steps": 200, "batch_size": 64, "lr": 6e-3, "warmup_steps": 20, "log_every": 20,
                      "eval_every": 50, "checkpoint_every": 50}},
    "gpu": {"data": {"transpose": 6}, "loader": {"chunk": 64}, "model": {"channels": [16, 32, 48, 64], "top": 256},
            "train": {"steps": 6000, "batch_size": 64, "lr": 2e-3, "warmup_steps": 200, "log_every": 100,
                      "eval_every": 500, "checkpoint_every": 500}},
    "paper": {"data": {"transpose": 6}, "loader": {"chunk": 100}, "model": {"channels": [32, 64, 96, 128], "top": 512},
              "train": {"steps": 30000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 500, "log_every": 100,
                        "eval_every": 1000, "checkpoint_every": 1000}},
}

# the LSTM's units per budget: about as many parameters as the RLadder of that budget (cpu: 301k vs 312k,
# gpu: 1.9M vs 2.1M, paper: 7.1M vs 8.5M)
LSTM_UNITS = {b: {"model": {"top": units}} for b, units in (("smoke", 8), ("cpu", 224), ("gpu", 640), ("paper", 1280))}


def bl2012_found() -> dict[str, Path]:
    """Column -> pickle, for the BL2012 files in $RLADDER_BL2012."""
    folder = Path(os.environ.get("RLADDER_BL2012", "") or "/nonexistent")
    return {col: folder / file for col, (_, file) in BL2012.items() if (folder / file).is_file()}


def table3(options) -> Recipe:
    found = bl2012_found()
    ours = JSB + "*"                                            # the music21 chorales
    names = {col: col + ("" if col in found else MISSING) for col in BL2012 if col != JSB}
    columns = (*names.values(), ours) + ((f"{JSB} (BL2012)",) if JSB in found else ())
    rows, layout = [], []
    for label, key, model, paper in ROWS:
        budgets = LSTM_UNITS if model == "music_lstm" else {}
        rows.append(Row(label, key, run(model), {ours: NLL}, budgets=budgets))
        cells = {ours: Cell(key, NLL, paper[3])}
        for col, number in zip(BL2012, paper):
            column = names.get(col, f"{JSB} (BL2012)")
            if col in found:
                which = f"{key}_{BL2012[col][0]}"
                data = {"name": "bl2012", "set": BL2012[col][0], "path": str(found[col])}
                rows.append(Row(f"{label}, BL2012 {col}", which, run(model, data), {column: NLL}, budgets=budgets))
                cells[column] = Cell(which, NLL, number)
            elif col != JSB:
                cells[column] = Cell("", NLL, number)
        layout.append((label, cells))
    rows.append(Row("Trivial baselines", "baselines", run("music_lstm"), {ours: NLL},
                    budgets={b: {"train": {"steps": 1, "eval_every": 1, "checkpoint_every": 1, "log_every": 1}}
                             for b in BUDGETS}))
    layout += [("Every note at its training-set frequency", {ours: Cell("baselines", "predict/prior_nll")}),
               ("Every note at probability 0.5 (88 ln 2)", {ours: Cell("baselines", "predict/uniform_nll")})]
    absent = [c for c in BL2012 if c not in found]
    notes = (f"NLL: frame-level negative log-likelihood in nats per step, -Σ_n [x log p + (1-x) log(1-p)] over the 88 "
             f"keys, averaged over every step of every test piece (padding excluded). * Ours: the Bach chorales of "
             f"the music21 corpus (351 four-part chorales, eighth-note steps, split by Riemenschneider number), not "
             f"the BL2012 JSB Chorales (382 chorales, quarter-note steps, their split): comparable in kind, not "
             f"exactly." + (f" {MISSING} Data not available offline: supply the BL2012 files (set RLADDER_BL2012 to "
                            f"the folder holding {', '.join(repr(BL2012[c][1]) for c in absent)})." if absent else "")
             + "\n\n" + PAPER_ONLY)
    return Recipe("Table 3: polyphonic music, next-step NLL (nats per step)", columns, tuple(rows), BUDGETS, notes,
                  tuple(layout))


@hookimpl
def rladder_components():
    return [Component("recipe", "table3", table3, NoOptions,
                      "Paper Table 3: music RLadder, its ablations and the LSTM on the Bach chorales (+ BL2012 if given).")]

"""`rladder reproduce NAME`: train every row of a paper table over seeds, write a Markdown table.

A ``recipe`` component (registered by a plugin) returns a ``Recipe``: the table's rows, each a
complete run config with the metrics to report and the paper's numbers, and budgets (config
overlays applied to every row: ``smoke`` for CI, ``cpu`` for 2 cores, ``paper`` for the paper's
scale on a GPU). Runs land in ``OUT/<row>/seed<k>``; a run that already has its test results is
not trained again, so an interrupted reproduction continues where it stopped.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from rladder.registry import ConfigError, get_registry

from .config import merge, resolve
from .files import write_text


@attrs.frozen
class Row:
    label: str                                   # the row's name in the table
    key: str                                     # folder name of its runs
    config: Mapping[str, Any]                    # a complete raw run config
    metrics: Mapping[str, str]                   # column -> test metric key, e.g. "classify/error"
    paper: Mapping[str, str] = attrs.field(factory=dict)  # column -> the paper's "0.74 ± 0.09"
    budgets: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)  # row-specific budget overlays


@attrs.frozen
class Cell:
    """One cell of a pivoted table: the metric of one run, and the paper's number."""

    run: str                                     # Row.key of the run
    metric: str                                  # test metric key
    paper: str = "–"


@attrs.frozen
class Recipe:
    title: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    budgets: Mapping[str, Mapping[str, Any]]     # budget -> overlay for every row
    notes: str = ""
    # A pivoted layout (Table 2: models x settings), each display row a label and its cells by
    # column; None: one display row per run, its metrics as columns.
    layout: tuple[tuple[str, Mapping[str, Cell]], ...] | None = None

    def config(self, row: Row, budget: str, seed: int) -> dict[str, Any]:
        if budget not in self.budgets:
            raise ConfigError(f"unknown budget {budget!r}; this recipe has {', '.join(self.budgets)}")
        raw = merge(dict(row.config), self.budgets[budget])
        raw = merge(raw, row.budgets.get(budget, {}))
        return merge(raw, {"seed": seed})


def reproduce(name: str, budget: str, seeds: int, out: Path, log=print) -> Path:
    from .evaluation import evaluate_run
    from .train import Trainer

    reg = get_registry()
    comp, options = reg.resolve("recipe", {"name": name}, path="recipe")
    recipe: Recipe = comp.factory(options)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, float]]] = {}
    walls: dict[str, float] = {}
    started = time.perf_counter()
    for row in recipe.rows:
        results[row.key] = []
        t0 = time.perf_counter()
        for seed in range(seeds):
            run_dir = out / row.key / f"seed{seed}"
            done = run_dir / "eval-test.json"
            if done.is_file():
                log(f"[{row.label} seed {seed}] already done")
                results[row.key].append(json.loads(done.read_text())["metrics"])
                continue
            config = resolve(recipe.config(row, budget, seed), reg)
            log(f"[{row.label} seed {seed}] training {config.model['name']} for {config.train.steps} steps")
            resume = (run_dir / "checkpoints" / "last.pt").is_file()
            Trainer(config, run_dir, resume=resume, progress=False, log=lambda m: None).fit()
            metrics = evaluate_run(run_dir, "test")["metrics"]
            results[row.key].append(metrics)
            log(f"[{row.label} seed {seed}] " + ", ".join(f"{c}: {metrics[k]:.3f}" for c, k in row.metrics.items()
                                                         if k in metrics))
        walls[row.key] = time.perf_counter() - t0
    total = time.perf_counter() - started
    table = markdown(recipe, results, budget, seeds, walls, total)
    write_text(out / "results.md", table)
    write_text(out / "results.json", json.dumps({"recipe": name, "budget": budget, "seeds": seeds,
                                                 "wall_seconds": total, "rows": results}, indent=2) + "\n")
    log(table)
    return out / "results.md"


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def markdown(recipe: Recipe, results, budget: str, seeds: int, walls: Mapping[str, float], total: float) -> str:
    head = ["Model"]
    for col in recipe.columns:
        head += [f"{col} (ours)", f"{col} (paper)"]
    head.append("wall time")
    lines = [f"## {recipe.title}", "",
             f"Budget `{budget}`, {seeds} seed(s) per run, mean ± std over seeds; total wall time {total / 60:.1f} min.",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if recipe.layout is None:
        layout = [(row.label, {col: Cell(row.key, row.metrics[col], row.paper.get(col, "–"))
                               for col in recipe.columns if col in row.metrics}) for row in recipe.rows]
    else:
        layout = recipe.layout
    for label, cells_by_col in layout:
        cells = [label]
        runs = []
        for col in recipe.columns:
            cell = cells_by_col.get(col)
            ours = mean_std([r.get(cell.metric) for r in results.get(cell.run, [])]) if cell else "–"
            cells += [ours, cell.paper if cell else "–"]
            if cell and cell.run not in runs:
                runs.append(cell.run)
        cells.append(f"{sum(walls.get(r, 0) for r in runs) / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    if recipe.notes:
        lines += ["", recipe.notes]
    return "\n".join(lines) + "\n"

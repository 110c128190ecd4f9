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
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from rladder.registry import ConfigError, get_registry

from .config import apply_set, merge, read_toml, resolve, to_toml
from .files import write_text
from .versions import describe_numerics


def row_config(data: Mapping[str, Any] | str, model: Mapping[str, Any] | str, tasks: Mapping[str, Any],
               best_metric: str = "", **sections: Mapping[str, Any]) -> dict[str, Any]:
    """A complete raw run config for a recipe row: components by name or table, the tasks by label,
    the validation metric that picks the best checkpoint, and any other sections (``labels``, ``train``)."""
    def table(value):
        return {"name": value} if isinstance(value, str) else dict(value)
    config: dict[str, Any] = {"data": table(data), "model": table(model), "tasks": dict(tasks)}
    for key, value in sections.items():
        config[key] = dict(value)
    if best_metric:
        config = merge(config, {"train": {"best_metric": best_metric}})
    return config


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


SEEDS_HINT = "give a count of at least 1 (3: seeds 0, 1, 2) or the seeds themselves, each >= 0 (3,4)"


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """The seeds of ``--seeds``: a count ``n`` is seeds 0 .. n-1, a sequence the seeds themselves."""
    seed_ids = list(range(seeds)) if isinstance(seeds, int) else list(dict.fromkeys(seeds))
    if not seed_ids or min(seed_ids) < 0:
        raise ConfigError(f"seeds {seeds!r}: {SEEDS_HINT}")
    return seed_ids


def reproduce(name: str, budget: str, seeds: int | Sequence[int], out: Path, log=print, parallel: int = 1,
              rows: Sequence[str] = (), sets: Sequence[str] = ()) -> tuple[Path, dict[str, int]]:
    """Train every (row, seed) of recipe ``name`` and write ``results.md`` (rewritten as runs finish).

    ``seeds`` is a count (seeds 0 .. n-1) or the seeds themselves (``[3, 4]``: add seeds to a
    table trained earlier without training the first ones again). Seeds finished earlier in ``out``
    join the table: ``[3, 4]`` into the folder of a three-seed table gives a five-seed table.

    Runs go seed by seed (every row's seed 0 first), so the first complete table comes early; within
    a seed the rows start from the last (the full model, the longest run) so parallel runs pack well.
    ``rows`` (row keys) trains only those rows; the other rows' finished runs in ``out`` are read
    back into the table, so more seeds can be added to the rows that matter. ``sets`` are `--set`
    overrides (``train.max_minutes=5``) applied to every row after the budget, a ``tasks.<label>`` one only
    to the rows with that task (or to every row when it gives the task's ``name``); the table names them.

    ``parallel`` > 1 runs that many trainings at once, each a separate `rladder train` process with
    its own run folder and log (``OUT/<row>/seed<k>.log``), on the CPU cores (``cores // parallel``
    threads each) or sharing the GPU. A run that fails is reported in the table and does not stop
    the others. Finished runs are read back, not trained again; an interrupted one is resumed.
    Returns the path of ``results.md`` and the number of failed runs per row key (rows with none left out).
    """
    seed_ids = seed_list(seeds)
    reg = get_registry()
    comp, options = reg.resolve("recipe", {"name": name}, path="recipe")
    recipe: Recipe = comp.factory(options)
    if budget not in recipe.budgets:
        raise ConfigError(f"unknown budget {budget!r}; recipe {name!r} has {', '.join(recipe.budgets)}")
    keys = [row.key for row in recipe.rows]
    unknown = sorted(set(rows) - set(keys))
    if unknown:
        raise ConfigError(f"recipe {name!r} has no row {', '.join(map(repr, unknown))}; its rows are {', '.join(keys)}")

    def row_raw(row: Row, seed: int, applied: dict[str, list[str]] | None = None) -> dict:
        raw = recipe.config(row, budget, seed)
        for expr in sets:
            if _concerns(raw, expr):
                raw = apply_set(raw, expr)
                if applied is not None:
                    applied.setdefault(expr, []).append(row.key)
        return raw

    chosen = [row for row in recipe.rows if not rows or row.key in rows]
    if sets:                                # a bad override fails here, before anything is trained
        applied: dict[str, list[str]] = {}
        for row in chosen:
            resolve(row_raw(row, 0, applied), reg)
        for expr in sets:               # only a tasks.<label> override can miss rows (_concerns)
            task = _task_of(expr)
            skipped = [row.key for row in chosen if row.key not in applied.get(expr, [])]
            if expr not in applied:
                raise ConfigError(f"--set {expr}: no row trained here has a task {task!r} (rows: "
                                  f"{', '.join(row.key for row in chosen)}); give its name first to add it to every "
                                  f"row (--set tasks.{task}.name=...)")
            if skipped:
                log(f"--set {expr} applies to {', '.join(applied[expr])}; not to {', '.join(skipped)}, "
                    f"which have no task {task!r}")
    out.mkdir(parents=True, exist_ok=True)
    finished = {(row.key, seed) for row in recipe.rows for seed in _finished_seeds(out / row.key)}
    earlier = sorted({seed for _, seed in finished} - set(seed_ids))
    if earlier:
        log(f"{out}: seeds {', '.join(map(str, earlier))} were trained earlier and are read back into the table")
    seed_ids = sorted({*seed_ids, *earlier})
    jobs = [(row, seed) for seed in seed_ids for row in recipe.rows if (row not in chosen or seed in earlier)
            and (row.key, seed) in finished]                                           # read back first
    # within a seed, the last rows first: tables list the full model (the costliest run) last, and
    # starting the long runs first lets the short baselines fill the gaps when runs go side by side
    jobs += [(row, seed) for seed in seed_ids if seed not in earlier for row in reversed(chosen)]
    results: dict[str, list[dict[str, float]]] = {row.key: [] for row in recipe.rows}
    failed: dict[str, list[str]] = {row.key: [] for row in recipe.rows}
    walls: dict[str, float] = {row.key: 0.0 for row in recipe.rows}
    machines: dict[str, list[str]] = {}     # numerics (CPU ISA, threads, GPU) -> the runs made on them
    started = time.perf_counter()
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0

    def finish(row: Row, seed: int, metrics: dict[str, float] | None, wall: float, problem: str = "") -> None:
        walls[row.key] += wall
        if metrics is None:
            failed[row.key].append(problem)
            log(f"[{row.label} seed {seed}] FAILED: {problem}")
        else:
            results[row.key].append(metrics)
            machines.setdefault(_run_numerics(out / row.key / f"seed{seed}"), []).append(f"{row.key} seed {seed}")
            log(f"[{row.label} seed {seed}] " + ", ".join(f"{c}: {metrics[k]:.3f}" for c, k in row.metrics.items()
                                                         if k in metrics))
        write_table(recipe, name, budget, seed_ids, out, results, failed, walls, time.perf_counter() - started,
                    sets=sets, machines=machines,
                    pending=len(jobs) - sum(map(len, results.values())) - sum(map(len, failed.values())))

    def one(job: tuple[Row, int]) -> None:
        row, seed = job
        run_dir = out / row.key / f"seed{seed}"
        done = run_dir / "eval-test.json"
        wall_file = run_dir / "reproduce-wall.json"
        if done.is_file():  # finished earlier (or a row not chosen with ``rows``): read back
            log(f"[{row.label} seed {seed}] already done (on {_run_numerics(run_dir)})")
            wall = json.loads(wall_file.read_text())["seconds"] if wall_file.is_file() else 0.0
            finish(row, seed, json.loads(done.read_text())["metrics"], wall)
            return
        t0 = time.perf_counter()
        try:
            raw = row_raw(row, seed)
            if threads:
                raw = merge(raw, {"train": {"threads": threads}})
            config = resolve(raw, reg)
            log(f"[{row.label} seed {seed}] training {config.model['name']} for {config.train.steps} steps")
            if parallel > 1:
                _train_in_process_of_its_own(config, run_dir)
            else:
                _train_here(config, run_dir)
            metrics = json.loads(done.read_text())["metrics"]
            write_text(wall_file, json.dumps({"seconds": time.perf_counter() - t0}) + "\n")
        except Exception as exc:  # noqa: BLE001 - one failed row must not stop the table
            finish(row, seed, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}")
            return
        finish(row, seed, metrics, time.perf_counter() - t0)

    stale = [problem for row, seed in jobs if (problem := _stale(row_raw(row, seed), reg,
                                                                   out / row.key / f"seed{seed}"))]
    if stale:
        raise ConfigError(f"{out} holds runs made with another configuration (another budget, or the recipe "
                          f"changed): {'; '.join(stale[:3])}{' ...' if len(stale) > 3 else ''}. Give another "
                          "--out, or delete those run folders to train them again")
    if parallel > 1:
        with ThreadPoolExecutor(parallel) as pool:
            list(pool.map(one, jobs))
    else:
        for job in jobs:
            one(job)
    table = write_table(recipe, name, budget, seed_ids, out, results, failed, walls, time.perf_counter() - started,
                        0, sets=sets, machines=machines)
    log(table)
    return out / "results.md", {key: len(problems) for key, problems in failed.items() if problems}


def _task_of(expr: str) -> str | None:
    """<label> of a ``tasks.<label>.<key>=...`` override other than the task's ``name`` (which adds the task)."""
    parts = expr.partition("=")[0].strip().split(".")
    return parts[1] if len(parts) >= 3 and parts[0] == "tasks" and parts[2] != "name" else None


def _concerns(raw: dict, expr: str) -> bool:
    """Whether the override ``expr`` concerns a row's config: a task's option only rows that have that task;
    anything else every row."""
    task = _task_of(expr)
    return task is None or task in raw.get("tasks", {})


def _finished_seeds(row_dir: Path) -> list[int]:
    """The seeds of ``row_dir/seed<k>`` run folders that hold a test evaluation."""
    return sorted(int(p.name[4:]) for p in row_dir.glob("seed*")
                  if p.name[4:].isdigit() and (p / "eval-test.json").is_file())


def _run_numerics(run_dir: Path) -> str:
    """The numerics a run was trained on, as one line (meta.json; 'not recorded' for older runs)."""
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
    except (OSError, ValueError):
        meta = {}
    return describe_numerics(meta.get("numerics"))


def _stale(raw: Mapping[str, Any], reg, run_dir: Path) -> str:
    """'' if ``run_dir`` holds no run or one made from ``raw``; else what differs (threads aside)."""
    import tomllib

    path = run_dir / "config.toml"
    if not path.is_file():
        return ""

    def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, Mapping):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    want = flat(tomllib.loads(to_toml(resolve(raw, reg))))
    have = flat(read_toml(path))
    diff = [k for k in sorted(set(want) | set(have)) if k != "train.threads" and want.get(k) != have.get(k)]
    if not diff:
        return ""
    k = diff[0]
    return f"{run_dir.parent.name} seed {run_dir.name[4:]}: {k} = {have.get(k, '(unset)')!r}, now {want.get(k, '(unset)')!r}"


def _train_here(config, run_dir: Path) -> None:
    from .evaluation import evaluate_run
    from .train import Trainer

    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)                     # a run that died before its first checkpoint: start over
    Trainer(config, run_dir, resume=resume, progress=False, log=lambda m: None).fit()
    evaluate_run(run_dir, "test")


def _train_in_process_of_its_own(config, run_dir: Path) -> None:
    """`rladder train` (or `resume`) in a child process; its output goes to ``<run_dir>.log``."""
    resume = (run_dir / "checkpoints" / "last.pt").is_file()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    request = run_dir.parent / f"{run_dir.name}.toml"
    write_text(request, to_toml(config))
    cmd = [sys.executable, "-m", "rladder.core"]
    cmd += ["resume", str(run_dir)] if resume else ["train", str(request), "--run-dir", str(run_dir)]
    cmd += ["--no-pictures"]
    log_path = run_dir.parent / f"{run_dir.name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(config.train.threads or 1)}
    with open(log_path, "a") as fh:
        code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-1:]
        raise RuntimeError(f"exit code {code}; {tail[0] if tail else 'no output'} (log: {log_path})")


def write_table(recipe: Recipe, name: str, budget: str, seeds: Sequence[int], out: Path, results, failed, walls,
                total: float, pending: int, sets: Sequence[str] = (),
                machines: Mapping[str, list[str]] | None = None) -> str:
    table = markdown(recipe, results, budget, seeds, walls, total, failed, pending, sets, machines)
    write_text(out / "results.md", table)
    write_text(out / "results.json", json.dumps({"recipe": name, "budget": budget, "sets": list(sets),
                                                 "seeds": seeds, "wall_seconds": total, "rows": results,
                                                 "failed": failed, "pending": pending,
                                                 "numerics": dict(machines or {})}, indent=2) + "\n")
    return table


def mean_std(values: list[float], seeds: int = 0) -> str:
    """'mean ± std' over the finite values; '(n seeds)' when fewer than ``seeds`` of them."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    text = f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
    return text + (f" ({len(values)} seed{'s' * (len(values) > 1)})" if len(values) < seeds else "")


def markdown(recipe: Recipe, results, budget: str, seeds: int | Sequence[int], walls: Mapping[str, float],
             total: float, failed: Mapping[str, list[str]] | None = None, pending: int = 0,
             sets: Sequence[str] = (), machines: Mapping[str, list[str]] | None = None) -> str:
    if isinstance(seeds, int):
        seeds = list(range(seeds))
    named = "" if list(seeds) == list(range(len(seeds))) else f" ({', '.join(map(str, seeds))})"
    head = ["Model"]
    for col in recipe.columns:
        head += [f"{col} (ours)", f"{col} (paper)"]
    head.append("wall time")
    failed = failed or {}
    status = f"; {pending} run(s) still to come" if pending else ""
    overrides = f" with {' and '.join(f'`--set {e}`' for e in sets)}" if sets else ""
    lines = [f"## {recipe.title}", "",
             f"Budget `{budget}`{overrides}, {len(seeds)} seed(s){named} per run, mean ± std over seeds; total wall time "
             f"{total / 60:.1f} min{status}.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
            ours = mean_std([r.get(cell.metric) for r in results.get(cell.run, [])], len(seeds)) if cell else "–"
            lost = len(failed.get(cell.run, [])) if cell else 0
            if lost:
                ours = "failed" if ours == "–" else f"{ours} ({lost} seed(s) failed)"
            cells += [ours, cell.paper if cell else "–"]
            if cell and cell.run not in runs:
                runs.append(cell.run)
        cells.append(f"{sum(walls.get(r, 0) for r in runs) / 60:.1f} min")
        lines.append("| " + " | ".join(cells) + " |")
    if recipe.notes:
        lines += ["", recipe.notes]
    problems = [f"- {key} seed run {i}: {p}" for key, ps in failed.items() for i, p in enumerate(ps)]
    if problems:
        lines += ["", "Failed runs:", *problems]
    if machines and len(machines) > 1:       # the same configuration gives other figures on other numerics
        lines += ["", "The runs were made on different numerics (CPU ISA, thread count or GPU), so seeds are not "
                      "bit-comparable across them (docs/results.md, \"Same code, another machine\"):",
                  *[f"- {where}: {', '.join(runs)}" for where, runs in machines.items()]]
    return "\n".join(lines) + "\n"

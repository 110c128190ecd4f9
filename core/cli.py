"""The `rladder` launcher (click).

Exit codes: 0 ok; 2 usage or configuration error (unknown name, bad option, shapes that do
not fit); 1 runtime failure. Errors print as one paragraph; `--debug` shows the traceback.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import select
import sys
import time
from collections.abc import Sequence

import click

from rladder.core import kinds as _kinds  # noqa: F401 - the component kinds are declared before any command runs
from rladder.registry import ALLOW_ENV, BLOCK_ENV, ConfigError, RladderError, on_registry_loaded

SET_HELP = "Override a config value, e.g. --set train.lr=2e-3 (repeatable; wins over files)."


class LauncherGroup(click.Group):
    """Turns rladder errors into one clear paragraph and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except RladderError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            kind = "configuration error" if isinstance(exc, ConfigError) else "error"
            click.echo(f"{kind}: {exc}", err=True)
            sys.exit(exc.exit_code)
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, BrokenPipeError) and _stdout_gone():
                # the reader of our output has gone (`rladder list | head -1`): stop quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(0)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc}\n(run `rladder --debug ...` to see the traceback)",
                       err=True)
            sys.exit(1)


def _stdout_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (a BrokenPipeError from elsewhere,
    such as a worker's socket, stays an error)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))


def version() -> str:
    return importlib.metadata.version("rladder")


def _global_option(ctx: click.Context, param: click.Parameter, value) -> None:
    """Apply --debug, --plugins or --disable-plugins, wherever it was given."""
    if value is None or value is False:
        return
    obj = ctx.ensure_object(dict)
    if param.name == "debug":
        obj["debug"] = True
        return
    # Environment variables, so that worker processes started later load the same plugins.
    from rladder.registry import reset_registry

    os.environ[ALLOW_ENV if param.name == "allow" else BLOCK_ENV] = value
    reset_registry(None)


def global_options(fn):
    """The launcher's own options, accepted before the command name and after it (the later one wins)."""
    common = {"expose_value": False, "is_eager": True, "callback": _global_option}
    for opt in reversed([
        click.option("--debug", is_flag=True, help="Show tracebacks instead of one-paragraph errors.", **common),
        click.option("--plugins", "allow", metavar="NAMES", help=f"Load only these third-party plugins "
                     f"(comma-separated entry-point or distribution names, or globs; env {ALLOW_ENV}).", **common),
        click.option("--disable-plugins", "block", metavar="NAMES",
                     help=f"Do not load these plugins (comma-separated entry-point or distribution names, or globs; "
                     f"env {BLOCK_ENV}).", **common),
    ]):
        fn = opt(fn)
    return fn


@click.group(cls=LauncherGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version(), "--version", prog_name="rladder", message="%(prog)s %(version)s")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """rladder: Recurrent Ladder networks (Prémont-Schwarz et al., NIPS 2017) from registry names."""
    ctx.ensure_object(dict)
    on_registry_loaded(_warn_unmatched_patterns)


WARNED_ENV = "_RLADDER_WARNED_PATTERNS"   # allow/block patterns already warned about, by this process or its parent


def _warn_unmatched_patterns(reg) -> None:
    """Warn on stderr about each --plugins/--disable-plugins pattern that matched no plugin, once: not again in
    this process (the registry may be loaded again), nor in the worker processes it starts (they inherit
    WARNED_ENV), nor in workers other than rank 0 when torchrun started them."""
    if os.environ.get("RANK", "0") != "0":
        return
    warned = set(filter(None, os.environ.get(WARNED_ENV, "").split("\n")))
    for key, message in reg.unmatched_warnings():
        if key not in warned:
            click.echo(f"warning: {message}", err=True)
            warned.add(key)
    if warned:
        os.environ[WARNED_ENV] = "\n".join(sorted(warned))


def registry():
    from rladder.registry import get_registry

    return get_registry()


# ------------------------------------------------------------------------------ plugins / list / describe
@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List plugins: status (ok, broken, blocked, not-allowed), provider, components.

    A plugin that provides a `kind/name` another plugin provides too is loaded, marked
    `ok (conflict: KIND/NAME also in OTHER)`; JSON: its `conflicts` maps `kind/name` to the other plugins.
    """
    reg = registry()
    rows = [p.to_dict() for p in sorted(reg.plugins.values(), key=lambda p: p.name)]
    conflicts = [{"component": f"{k}/{n}", "providers": [c.provider for c in comps]}
                 for (k, n), comps in sorted(reg.conflicts.items())]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "conflicts": conflicts}, indent=2))
        return
    width = max(len(r["name"]) for r in rows) if rows else 10
    for r in rows:
        dist = f"{r['distribution']} {r['version']}".strip()
        status = r["status"]
        if r["conflicts"]:
            status += " (conflict: " + "; ".join(f"{comp} also in {' and '.join(others)}"
                                                 for comp, others in r["conflicts"].items()) + ")"
        click.echo(f"{r['name']:<{width}}  {status:<11}  {dist}")
        if r["components"]:
            click.echo(f"{'':<{width}}  provides: {', '.join(r['components'])}")
        if r["reason"]:
            click.echo(f"{'':<{width}}  why: {r['reason']}")
        if r["error"]:
            click.echo(f"{'':<{width}}  error: {r['error']}")
    for c in conflicts:
        click.echo(f"conflict: {c['component']} is provided by {' and '.join(c['providers'])}")


@cli.command("list")
@click.argument("kind", required=False)
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(kind: str | None, pattern: str | None, as_json: bool) -> None:
    """List components of KIND (all kinds if omitted) whose names match PATTERN (a glob).

    KIND is one of the declared kinds (an unknown one lists them). A name that more than one plugin
    provides is listed once per provider, marked CONFLICT (JSON: `conflict: true`, and `providers`).
    """
    reg = registry()
    comps = reg.components(kind)
    if pattern:
        comps = [c for c in comps if fnmatch.fnmatch(c.name, pattern if any(ch in pattern for ch in "*?[")
                                                     else f"*{pattern}*")]
    rows = [(c, reg.providers(c.kind, c.name)) for first in comps for c in reg.providers(first.kind, first.name)]
    if as_json:
        click.echo(json.dumps([{"kind": c.kind, "name": c.name, "description": c.description,
                                "plugin": c.plugin, "distribution": c.distribution, "version": c.version,
                                "conflict": len(providers) > 1, "providers": [p.provider for p in providers]}
                               for c, providers in rows], indent=2))
        return
    if not rows:
        click.echo(f"no {kind or 'component'} matches {pattern!r}" if pattern else f"no {kind or 'component'}s")
        return
    for c, providers in rows:
        mark = f"  CONFLICT: {reg.conflict_note(c.kind, c.name)}" if len(providers) > 1 else ""
        click.echo(f"{c.kind:<13} {c.name:<24} {c.description}  [{c.plugin}]{mark}")


@cli.command("describe")
@click.argument("kind")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe_cmd(kind: str, name: str, as_json: bool) -> None:
    """Options (types, defaults, help) and provider of one component.

    KIND is one of the declared kinds (an unknown one lists them)."""
    comp = registry().get(kind, name)
    info = comp.describe()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{kind} {name!r}: {comp.description}")
    click.echo(f"provided by {comp.provider}")
    doc = (comp.factory.__doc__ or "").strip().splitlines()
    if doc and doc[0].strip().rstrip(".") != comp.description.strip().rstrip("."):   # often the same line
        click.echo(f"  {doc[0]}")
    click.echo("options:" if info["options"] else "options: none")
    for row in info["options"]:
        default = "required" if row["required"] else f"default {row['default']!r}"
        click.echo(f"  {row['name']}: {row['type']} ({default})")
        if row["help"]:
            click.echo(f"      {row['help']}")


# ------------------------------------------------------------------------------ config / check
def load(configs: Sequence[str], sets: Sequence[str]):
    from rladder.core.config import load_config

    return load_config(configs, sets)


@cli.command("config")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def config_cmd(configs: Sequence[str], sets: Sequence[str]) -> None:
    """Print the resolved config (every default filled in) as TOML."""
    from rladder.core.config import to_toml

    click.echo(to_toml(load(configs, sets)), nl=False)


@cli.command("check")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--batch", default=2, show_default=True, help="Dummy batch size.")
def check_cmd(configs: Sequence[str], sets: Sequence[str], print_config: bool, batch: int) -> None:
    """Build the model and tasks, run one forward and backward pass on a dummy batch.

    Prints the parameter count and every level's shapes; fails (exit 2) on any contract
    that does not hold: channels and shapes between levels, down-sampling, task inputs.
    """
    from rladder.core.config import to_toml
    from rladder.core.checks import check_run

    config = load(configs, sets)
    if print_config:
        click.echo(to_toml(config), nl=False)
        return
    report = check_run(config, batch=batch)
    click.echo(report)


# ------------------------------------------------------------------------------ train / resume / eval / predict
def _default_run_dir(configs: Sequence[str]) -> str:
    from pathlib import Path

    stem = Path(configs[-1]).stem if configs else "run"
    return str(Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def _finish(run_dir, pictures: bool) -> None:
    """After training: test-set evaluation of the best weights, then pictures."""
    from rladder.core.evaluation import evaluate_run, format_results

    results = evaluate_run(run_dir, "test")
    click.echo(format_results(results, f"test ({results['checkpoint']} checkpoint, step {results['step']})"))
    if pictures:
        _pictures(run_dir)


def _pictures(run_dir, **options) -> None:
    """Draw the run's pictures and list them, saying which ones replaced a file that was there."""
    from pathlib import Path

    from rladder.core.viz import write_pictures

    before = {p.resolve() for p in Path(run_dir).glob("*.png")}
    for path in write_pictures(run_dir, **options):
        click.echo(f"picture: {path}" + (" (replaced)" if Path(path).resolve() in before else ""))


def distributed_options(fn):
    """--nproc and the multi-node options of train and resume."""
    for opt in reversed([
        click.option("--nproc", default=1, show_default=True, type=click.IntRange(1),
                     help="Processes on this node (DDP through torch.distributed's launcher; gloo on CPU, NCCL on GPU)."),
        click.option("--nnodes", default=1, show_default=True, type=click.IntRange(1), help="Nodes in all."),
        click.option("--node-rank", default=0, show_default=True, type=click.IntRange(0), help="This node's rank."),
        click.option("--master-addr", default="127.0.0.1", show_default=True, help="Address of node 0."),
        click.option("--master-port", type=int, help="Port on node 0 (multi-node)."),
    ]):
        fn = opt(fn)
    return fn


def _run_training(config, run_dir, resume: bool, no_test: bool, no_pictures: bool, launch_args: list[str],
                  nproc: int, nnodes: int, node_rank: int, master_addr: str, master_port: int | None) -> None:
    """Train here, or start worker processes that each run the same command (see core/distributed.py)."""
    from rladder.core import distributed
    from rladder.core.train import Trainer

    dist = distributed.from_env()
    if dist is None and (nproc > 1 or nnodes > 1):
        distributed.launch(launch_args, nproc, nnodes, node_rank, master_addr, master_port)
        return
    if dist is None:
        Trainer(config, run_dir, resume=resume).fit()
    else:
        distributed.join(dist, config.train.device)
        try:
            Trainer(config, run_dir, resume=resume, dist=dist).fit()
        except BaseException:
            distributed.leave(meet=False)
            raise
        distributed.leave()
        if not dist.main:
            return
    if not no_test:
        _finish(run_dir, pictures=not no_pictures)


@cli.command("train")
@click.argument("configs", nargs=-1, required=True, metavar="CONFIG...")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--run-dir", type=click.Path(file_okay=False), help="Run folder (default: runs/<config>-<time>).")
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.option("--no-test", is_flag=True, help="Skip the test-set evaluation and pictures at the end.")
@click.option("--no-pictures", is_flag=True, help="Skip the pictures at the end.")
@click.option("--restart", is_flag=True,
              help="Start over a run in --run-dir that stopped before its first checkpoint (its files are removed).")
@distributed_options
def train_cmd(configs, sets, run_dir, print_config, no_test, no_pictures, restart, **launch) -> None:
    """Train from CONFIG files; evaluate the best checkpoint on the test split and draw pictures."""
    from pathlib import Path

    from rladder.core import distributed, runs
    from rladder.core.config import to_toml

    config = load(configs, sets)
    if print_config:
        click.echo(to_toml(config), nl=False)
        return
    worker = distributed.from_env() is not None
    if worker and not run_dir:
        raise ConfigError("under torchrun every process must write to the same folder: give --run-dir DIR")
    run_dir = Path(run_dir or _default_run_dir(configs))
    args = ["train", *configs, *[f"--set={s}" for s in sets], "--run-dir", str(run_dir)]
    args += ["--no-test"] * no_test + ["--no-pictures"] * no_pictures
    if not worker and runs.holds_run(run_dir):
        if restart:
            removed = runs.clear_run(run_dir)
            click.echo(f"restarting the run in {run_dir}: removed {', '.join(removed) or 'nothing'}", err=True)
        elif runs.checkpoints(run_dir):
            raise ConfigError(f"{run_dir} already holds a run; continue it with `rladder resume {run_dir}` or "
                              f"choose another --run-dir")
        else:
            nproc = ["--nproc", str(launch["nproc"])] if launch["nproc"] > 1 else []
            raise runs.not_resumable_error(run_dir, args[1:] + nproc)
    if not worker:
        click.echo(f"run folder: {run_dir}", err=True)
    _run_training(config, run_dir, False, no_test, no_pictures, args, **launch)


@cli.command("resume")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--no-test", is_flag=True, help="Skip the test-set evaluation and pictures at the end.")
@click.option("--no-pictures", is_flag=True, help="Skip the pictures at the end.")
@distributed_options
def resume_cmd(run_dir, no_test, no_pictures, **launch) -> None:
    """Continue a run from its last checkpoint (bit-identical on CPU), with as many processes as before."""
    from pathlib import Path

    from rladder.core.runs import not_resumable_error, run_config

    config = run_config(run_dir)
    if not (Path(run_dir) / "checkpoints" / "last.pt").is_file():
        raise not_resumable_error(Path(run_dir))
    args = ["resume", str(run_dir)] + ["--no-test"] * no_test + ["--no-pictures"] * no_pictures
    _run_training(config, run_dir, True, no_test, no_pictures, args, **launch)


@cli.command("eval")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def eval_cmd(run_dir, split, which, as_json) -> None:
    """Evaluate a run's checkpoint on a split; writes RUN_DIR/eval-<split>.json (eval-<split>-last.json for
    --checkpoint last when the run has a best checkpoint, so the run's own result is kept)."""
    from rladder.core.evaluation import evaluate_run, format_results

    results = evaluate_run(run_dir, split, which)
    click.echo(json.dumps(results, indent=2) if as_json else
               format_results(results, f"{split} ({results['checkpoint']} checkpoint, step {results['step']})"))


@cli.command("predict")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False),
              help=".npy or .npz (key 'x') with inputs (N, T, *step) or one sequence (T, *step); uint8 or [0, 1].")
@click.option("--output", "output_path", type=click.Path(dir_okay=False),
              help="Where to write predictions (.npz; default: next to the input).")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--rollout", default=0, show_default=True, type=click.IntRange(0),
              help="Then feed the predicted next frame back for this many steps (closed loop), as 'rollout'.")
def predict_cmd(run_dir, input_path, output_path, which, rollout) -> None:
    """Run a trained model on new inputs; writes every head and every task's predictions."""
    from rladder.core.predict import predict_file

    out = predict_file(run_dir, input_path, output_path, which, rollout_steps=rollout)
    click.echo(f"predictions written to {out}")


@cli.command("generate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--primer", required=True, metavar="PIECE_OR_FILE",
              help="What to continue: for music a MIDI file, SPLIT:INDEX (test:0) or a piece's name; for other data "
                   "a .npy/.npz file of inputs (T, *step).")
@click.option("--steps", default=64, show_default=True, type=click.IntRange(0), help="Steps to sample after the primer.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Output file (music: FILE.mid, and FILE.png beside it).")
@click.option("--primer-steps", default=0, show_default=True, type=click.IntRange(0),
              help="Use only the first N steps of the primer (0: all).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True)
def generate_cmd(run_dir, primer, steps, out, primer_steps, seed, which) -> None:
    """Continue a primer by sampling the model's predictions step by step (the state carried); the dataset
    writes the result (music: a MIDI file and a piano-roll picture, primer and continuation in two colours)."""
    from rladder.core.generate import generate

    for path in generate(run_dir, primer, steps, out, which, seed, primer_steps):
        click.echo(f"written: {path}")


@cli.command("viz")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--split", default="test", show_default=True)
@click.option("--samples", default=4, show_default=True, help="Sequences to draw.")
@click.option("--checkpoint", "which", type=click.Choice(["best", "last"]), default="best", show_default=True)
def viz_cmd(run_dir, split, samples, which) -> None:
    """Pictures: inputs, predictions and class beliefs per step (like the paper's Fig. 4), learning curves."""
    _pictures(run_dir, split=split, samples=samples, which=which)


def _seeds(text: str) -> list[int]:
    """`--seeds`: "3" is a count (seeds 0, 1, 2); "3,4" (a comma) lists the seeds."""
    from rladder.core.reproduce import SEEDS_HINT, seed_list

    try:
        values = [int(p) for p in text.split(",") if p.strip()]
        return seed_list(values if "," in text else values[0] if values else 0)
    except (ValueError, ConfigError) as exc:
        problem = str(exc) if isinstance(exc, ConfigError) else f"{text!r}: {SEEDS_HINT}"
        raise click.BadParameter(problem, param_hint="--seeds") from None


@cli.command("reproduce")
@click.argument("name")
@click.option("--budget", default="smoke", show_default=True,
              help="smoke (CI), cpu (2 cores), gpu (one GPU, minutes) or paper (the paper's scale); see the recipe.")
@click.option("--seeds", default="1", show_default=True, metavar="N|S,S,...",
              help="Seeds per row: a count (0 .. N-1), or the seeds themselves, comma-separated (--seeds 3,4 adds "
                   "seeds to a table trained earlier: give its --out). Seeds finished earlier in --out are read "
                   "back into the table.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: runs/reproduce-NAME-BUDGET).")
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(1),
              help="Train this many runs at once, each in its own process (CPU cores are split between them; "
                   "on a GPU they share it). A failed run is reported in the table, the others go on, and the "
                   "command then exits with status 1.")
@click.option("--rows", default="", help="Train only these rows (comma-separated keys, see results.json); finished "
                                         "runs of the other rows in --out are read back into the table.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value of every row after the budget, e.g. --set train.max_minutes=5 "
                   "(repeatable; the table names the overrides). A tasks.<label>.<key> override goes to the rows "
                   "that have that task; one that gives tasks.<label>.name adds the task to every row.")
def reproduce_cmd(name, budget, seeds, out, parallel, rows, sets) -> None:
    """Train every row of a paper table (recipes: `rladder list recipe`) and write results.md."""
    from pathlib import Path

    from rladder.core.reproduce import reproduce

    path, failed = reproduce(name, budget, _seeds(seeds), Path(out or f"runs/reproduce-{name}-{budget}"),
                     log=lambda m: click.echo(m, err=True), parallel=parallel,
                     rows=[r.strip() for r in rows.split(",") if r.strip()], sets=sets)
    click.echo(f"table written to {path}")
    if failed:      # the table holds what the other runs made; a script must still see that some did not finish
        rows_ = ", ".join(f"{key} ({n})" for key, n in failed.items())
        raise click.ClickException(f"{sum(failed.values())} run(s) failed: {rows_}; the table lists why, with "
                                   f"each run's log")


@cli.group("data")
def data_group() -> None:
    """WebDataset shards of any registered dataset: build and verify."""


@data_group.command("build")
@click.argument("dataset")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the shards and manifest.json.")
@click.option("--split", "splits", multiple=True, help="Split(s) to write (default: all of the dataset's).")
@click.option("--shard-size", default=1000, show_default=True, type=click.IntRange(1), help="Samples per shard.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="A dataset option, e.g. --set train=20000 (see `rladder describe dataset NAME`).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Take the dataset and its options from a run config's [data] section.")
def data_build_cmd(dataset, out, splits, shard_size, sets, config_file) -> None:
    """Write DATASET (a registry name) as shards with a manifest (counts, sha256 per shard)."""
    from pathlib import Path

    from rladder.core.config import apply_set, read_toml
    from rladder.core.shards import build

    table = dict(read_toml(config_file).get("data", {})) if config_file else {}
    if table and table.get("name", dataset) != dataset:
        raise ConfigError(f"--config names dataset {table.get('name')!r}, the command {dataset!r}")
    table["name"] = dataset
    for expr in sets:
        table = apply_set(table, expr)
    manifest = build(table, Path(out), splits or None, shard_size, log=lambda m: click.echo(m, err=True))
    click.echo(f"shards written; manifest: {manifest}")


@data_group.command("verify")
@click.argument("folder", type=click.Path(file_okay=False))
def data_verify_cmd(folder) -> None:
    """Check every shard of FOLDER against its manifest (sha256, sample counts, keys)."""
    from pathlib import Path

    from rladder.core.shards import verify

    manifest = verify(Path(folder), log=lambda m: click.echo(m, err=True))
    total = sum(s["samples"] for s in manifest["splits"].values())
    click.echo(f"ok: {manifest['dataset']}, {total} samples in "
               f"{sum(len(s['shards']) for s in manifest['splits'].values())} shards match the manifest")


def _accept_global_options(group: click.Group, options: list[click.Parameter]) -> None:
    """Give every command (and sub-group) of ``group`` the launcher's own options."""
    for command in group.commands.values():
        command.params.extend(options)
        if isinstance(command, click.Group):
            _accept_global_options(command, options)


_accept_global_options(cli, [p for p in cli.params if p.callback is _global_option])


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="rladder")


if __name__ == "__main__":
    main()

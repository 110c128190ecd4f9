"""The `rladder` launcher (click).

Exit codes: 0 ok; 2 usage or configuration error (unknown name, bad option, shapes that do
not fit); 1 runtime failure. Errors print as one paragraph; `--debug` shows the traceback.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence

import click

from rladder.registry import ALLOW_ENV, BLOCK_ENV, KINDS, ConfigError, RladderError

CONFIG_HELP = "TOML config file(s); later files override earlier ones."
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
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc}\n(run `rladder --debug ...` to see the traceback)",
                       err=True)
            sys.exit(1)


def version() -> str:
    return importlib.metadata.version("rladder")


@click.group(cls=LauncherGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(version(), "--version", prog_name="rladder", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-paragraph errors.")
@click.option("--plugins", "allow", metavar="NAMES",
              help=f"Load only these third-party plugins (comma-separated names or globs; env {ALLOW_ENV}).")
@click.option("--disable-plugins", "block", metavar="NAMES",
              help=f"Do not load these plugins (comma-separated names or globs; env {BLOCK_ENV}).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, allow: str | None, block: str | None) -> None:
    """rladder: Recurrent Ladder networks (Prémont-Schwarz et al., NIPS 2017) from registry names."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    # Environment variables, so that worker processes started later load the same plugins.
    if allow is not None or block is not None:
        from rladder.registry import reset_registry

        if allow is not None:
            os.environ[ALLOW_ENV] = allow
        if block is not None:
            os.environ[BLOCK_ENV] = block
        reset_registry(None)


def registry():
    from rladder.registry import get_registry

    return get_registry()


# ------------------------------------------------------------------------------ plugins / list / describe
@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_cmd(as_json: bool) -> None:
    """List plugins: status (ok, broken, blocked, not-allowed), provider, components."""
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
        click.echo(f"{r['name']:<{width}}  {r['status']:<11}  {dist}")
        if r["components"]:
            click.echo(f"{'':<{width}}  provides: {', '.join(r['components'])}")
        if r["error"]:
            click.echo(f"{'':<{width}}  error: {r['error']}")
    for c in conflicts:
        click.echo(f"conflict: {c['component']} is provided by {' and '.join(c['providers'])}")


@cli.command("list")
@click.argument("kind", required=False)
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(kind: str | None, pattern: str | None, as_json: bool) -> None:
    """List components of KIND (all kinds if omitted) whose names match PATTERN (a glob)."""
    reg = registry()
    comps = reg.components(kind)
    if pattern:
        comps = [c for c in comps if fnmatch.fnmatch(c.name, pattern if any(ch in pattern for ch in "*?[")
                                                     else f"*{pattern}*")]
    if as_json:
        click.echo(json.dumps([{"kind": c.kind, "name": c.name, "description": c.description,
                                "plugin": c.plugin, "version": c.version} for c in comps], indent=2))
        return
    if not comps:
        click.echo(f"no {kind or 'component'} matches {pattern!r}" if pattern else f"no {kind or 'component'}s")
        return
    for c in comps:
        click.echo(f"{c.kind:<13} {c.name:<24} {c.description}  [{c.plugin}]")


@cli.command("describe")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe_cmd(kind: str, name: str, as_json: bool) -> None:
    """Options (types, defaults, help) and provider of one component."""
    comp = registry().get(kind, name)
    info = comp.describe()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    click.echo(f"{kind} {name!r}: {comp.description}")
    click.echo(f"provided by {comp.provider}")
    doc = (comp.factory.__doc__ or "").strip().splitlines()
    if doc:
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


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="rladder")


if __name__ == "__main__":
    main()

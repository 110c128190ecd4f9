"""Guards for the layout (core/, plugins/, registry/ mapped into the rladder.* namespace)."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOP = ("core", "plugins", "registry")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {"rladder." + ".".join(p.parent.relative_to(ROOT).parts)
               for t in TOP for p in (ROOT / t).rglob("__init__.py")}
    assert on_disk - listed == set(), f"unlisted packages (missing from the wheel): {sorted(on_disk - listed)}"
    assert not (ROOT / "rladder").exists() and not (ROOT / "__init__.py").exists()


def test_every_registering_plugin_module_has_an_entry_point():
    eps = set(PYPROJECT["project"]["entry-points"]["rladder"].values())
    modules = {f"rladder.plugins.{p.stem}" for p in (ROOT / "plugins").glob("*.py")
               if "rladder_components" in p.read_text()}
    assert modules - eps == set(), f"plugin modules without an entry point: {sorted(modules - eps)}"
    assert eps - modules == set(), f"entry points without a plugin module: {sorted(eps - modules)}"


def test_no_second_import_of_core():
    import rladder.core  # noqa: F401
    import rladder.plugins  # noqa: F401
    import rladder.registry  # noqa: F401

    assert "core" not in sys.modules and "plugins" not in sys.modules and "registry" not in sys.modules


def test_no_top_level_core_outside_the_repo(tmp_path):
    code = "import importlib.util as u; print(u.find_spec('core'), u.find_spec('rladder.core') is not None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "True"], out.stdout


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rladder.core", "--version"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("rladder "), out.stderr


def test_declared_dependencies_are_ranges_not_pins():
    deps = PYPROJECT["project"]["dependencies"]
    torch_dep = next(d for d in deps if d.startswith("torch"))
    assert "==" not in torch_dep and ">=" in torch_dep
    for name in ("pluggy", "attrs", "webdataset", "torchmetrics", "scikit-learn", "click"):
        assert any(d.startswith(name) for d in deps), name
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"

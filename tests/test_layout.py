"""The dependency rules of the layout (registry <- core <- plugins), read from the source with `ast`,
imports inside functions and ``importlib.import_module("...")`` calls included:

* core never imports ``rladder.plugins`` (absolute or relative);
* the registry never imports ``rladder.core`` or ``rladder.plugins``;
* a built-in plugin imports rladder only through the public faces, like a third-party plugin:
  ``from rladder.core import X``, ``from rladder.registry import X``, ``import rladder.core`` (or
  ``rladder.registry``), or a sibling plugin module relatively (``from .mnist import ...``); never a
  core or registry submodule (``rladder.core.interfaces``), and never core relatively (``from ..core``).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = {"core": "rladder.core", "registry": "rladder.registry", "plugins": "rladder.plugins"}
IMPORT_CALLS = {"import_module", "__import__"}


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def statements(path: pathlib.Path, root: pathlib.Path):
    """``(line, text, level, modules)`` of every import statement; ``modules`` are the absolute names it
    may load (for ``from X import a, b``: ``X``, ``X.a`` and ``X.b``, since ``a`` may be a submodule)."""
    source = path.read_text()
    rel = path.relative_to(root)
    package = [*PACKAGES[rel.parts[0]].split("."), *rel.parts[1:-1]]
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        text = lines[node.lineno - 1].strip() if hasattr(node, "lineno") else ""
        if isinstance(node, ast.Import):
            yield node.lineno, text, 0, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, text, node.level, [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in IMPORT_CALLS:
                yield node.lineno, text, 0, [node.args[0].value]


def rule_broken(top: str, text: str, level: int, modules: list[str]) -> str:
    """Why an import statement in ``top`` breaks the rules ("" when it does not)."""
    if top == "core" and any(under(m, "rladder.plugins") for m in modules):
        return "core never imports rladder.plugins"
    if top == "registry" and any(under(m, "rladder.core") or under(m, "rladder.plugins") for m in modules):
        return "the registry never imports rladder.core or rladder.plugins"
    if top == "plugins":
        if level and not under(modules[0], "rladder.plugins"):
            return "a plugin imports core and the registry absolutely, through their public faces"
        target = modules[0]          # the module itself: `import A.B` or `from A.B import x`
        if any(target.startswith(p + ".") for p in ("rladder.core", "rladder.registry")):
            return "a plugin imports from rladder.core / rladder.registry, never from a submodule"
    return ""


def violations(top: str, root: pathlib.Path = ROOT) -> list[str]:
    found = []
    for path in sorted((root / top).rglob("*.py")):
        for line, text, level, modules in statements(path, root):
            if why := rule_broken(top, text, level, modules):
                found.append(f"{path.relative_to(root)}:{line}: {text}  ({why})")
    return found


@pytest.mark.parametrize("top", ["core", "registry", "plugins"])
def test_dependency_rules(top):
    found = violations(top)
    assert not found, "imports against the dependency rules (registry <- core <- plugins):\n" + "\n".join(found)


@pytest.mark.parametrize("code, top, bad", [
    ("from rladder.plugins.mnist import load_mnist", "core", True),
    ("def f():\n    from .. import plugins", "core", True),
    ("def f():\n    from ..plugins.mnist import load_mnist", "core", True),
    ("import importlib\nimportlib.import_module('rladder.plugins.synthetic')", "core", True),
    ("from rladder.core import Task", "registry", True),
    ("def f():\n    import rladder.core.interfaces", "registry", True),
    ("from rladder.core.interfaces import Task", "plugins", True),
    ("from rladder.registry.errors import DataError", "plugins", True),
    ("def f():\n    from ..core.layers import conv", "plugins", True),
    ("from ..core import layers", "plugins", True),
    ("import rladder.core.testing", "plugins", True),
    ("from rladder.core import Task, layers\nfrom rladder.registry import option\nimport rladder.core", "plugins",
     False),
    ("from .mnist import load_mnist\nfrom . import synthetic", "plugins", False),
    ("from .interfaces import Task\nfrom rladder.registry import option\nfrom . import testing", "core", False),
    ("from .errors import ConfigError", "registry", False),
])
def test_the_checker_finds_violations_with_file_line_and_import(tmp_path, code, top, bad):
    (tmp_path / top).mkdir()
    (tmp_path / top / "mod.py").write_text(code + "\n")
    found = violations(top, tmp_path)
    if not bad:
        assert found == []
        return
    assert len(found) == 1, found
    where, line, rest = found[0].split(":", 2)
    assert where == f"{top}/mod.py" and rest.strip().startswith(code.splitlines()[int(line) - 1].strip()), found

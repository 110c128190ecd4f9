"""The README's "Writing a plugin" examples are real plugins: each ```python block there is run as a
module, registered, and every component it defines passes the conformance kit, so the README
cannot drift from the interfaces again."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import types

import attrs
import pytest

from rladder.core import DataSpec, build_ladder
from rladder.core.testing import check_component
from rladder.registry import ContractError, Registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADING = "## Writing a plugin"


def plugin_blocks() -> list[str]:
    """The fenced ```python blocks of the README section "## Writing a plugin"."""
    text = (ROOT / "README.md").read_text()
    assert f"\n{HEADING}\n" in text, f"README.md has no section {HEADING!r}"
    section = text.split(f"\n{HEADING}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.S | re.M)


def readme_registry() -> tuple[Registry, list[str]]:
    """The built-in plugins (the kit's default runs use them) plus one plugin per README block that
    implements the hook, named ``readme-<n>``."""
    reg = Registry(entry_points=False)
    for ep in sorted(importlib.metadata.entry_points(group="rladder"), key=lambda e: e.name):
        if ep.dist is not None and ep.dist.name == "rladder":
            try:
                module = ep.load()
            except Exception:  # noqa: BLE001 - a broken built-in is `rladder plugins`' business, not the README's
                continue
            reg.add_plugin(module, ep.name, ep.dist.name, ep.dist.version)
    names = []
    for i, code in enumerate(plugin_blocks(), 1):
        module = types.ModuleType(f"readme_block_{i}")
        exec(compile(code, f"README.md ({HEADING!r}, python block {i})", "exec"), module.__dict__)
        if hasattr(module, "rladder_components"):
            info = reg.add_plugin(module, f"readme-{i}")
            assert info.status == "ok", f"README python block {i} is a broken plugin: {info.error}"
            names.append(info.name)
    return reg, names


def readme_components() -> list[tuple[str, str]]:
    reg, names = readme_registry()
    return [(c.kind, c.name) for c in reg.components() if c.plugin in names]


def test_the_readme_shows_a_cell_a_model_and_a_task():
    kinds = {k for k, _ in readme_components()}
    assert {"encoder_cell", "model", "task"} <= kinds, kinds


@pytest.mark.parametrize("target", readme_components(), ids="/".join)
def test_readme_component_passes_the_conformance_kit(target):
    reg, _ = readme_registry()
    check_component(*target, registry=reg)


def test_the_readme_cell_rejects_spatial_inputs_located_at_the_config_field():
    reg, _ = readme_registry()
    from rladder.core import LadderSpec
    from rladder.registry import structure

    spec = structure(LadderSpec, {"levels": [{"encoder": {"name": "conv", "channels": 16}},
                                             {"encoder": {"name": "tanh_rnn"}}], "decoder": False})
    with pytest.raises(ContractError, match=r"^model.levels\[1\].encoder: encoder_cell 'tanh_rnn' needs a vector "
                                            r"input \(D,\), got \(16, 8, 8\)"):
        build_ladder(spec, DataSpec("video", (1, 8, 8), 3, {"x": ""}), reg)
    vector = attrs.evolve(spec, levels=(attrs.evolve(spec.levels[0], encoder={"name": "linear", "units": 8}),
                                        spec.levels[1]))
    assert build_ladder(vector, DataSpec("video", (1, 8, 8), 3, {"x": ""}), reg).shapes == [(8,), (16,)]

"""pytest plugin (entry point ``pytest11``): conformance tests for registered components.

One test per encoder cell, decoder cell, dataset, model and task (the kinds in
``rladder.core.testing.CHECKED_KINDS``); a check that cannot run here (a dataset whose files
are missing) is reported as a skip with the reason.

Fixtures: ``rladder_component`` (parametrized over ``(kind, name)`` targets) and
``rladder_conformance`` (the kit, `rladder.core.testing`). Option ``--rladder-plugin NAME``
(repeatable) limits the targets to the components of those plugins or distributions.
Nothing heavy is imported unless a test uses the fixtures.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("rladder")
    group.addoption("--rladder-plugin", action="append", default=[], metavar="NAME",
                    help="run rladder conformance tests for the cells, decoders, datasets, models and tasks "
                         "of this plugin (entry-point name or distribution); repeatable; default: all")


def pytest_generate_tests(metafunc):
    if "rladder_component" in metafunc.fixturenames:
        from rladder.core.testing import conformance_targets

        targets = conformance_targets(metafunc.config.getoption("rladder_plugin") or None)
        metafunc.parametrize("rladder_component", targets, ids=[f"{k}/{n}" for k, n in targets])


@pytest.fixture
def rladder_conformance():
    import rladder.core.testing as kit

    return kit

"""The plugin author's conformance test: `pytest --rladder-plugin rladder-toy check_toy.py`."""


def test_conformance(rladder_component, rladder_conformance):
    rladder_conformance.check(rladder_component)

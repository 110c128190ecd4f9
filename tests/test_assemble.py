"""Contract checks before training: shapes, down-sampling, heads, task inputs (errors name the field)."""

from __future__ import annotations

import pathlib

import attrs
import pytest
import torch

from rladder.core import DataSpec, LadderSpec, Needs, Task, build_ladder, build_model, build_tasks
from rladder.core.assemble import build_run
from rladder.core.config import load_config
from rladder.registry import Component, ContractError, get_registry, hookimpl, structure

ROOT = pathlib.Path(__file__).resolve().parents[1]
VIDEO = DataSpec("video", (1, 30, 30), 3, {"x": "", "y": ""}, num_classes=4)
DEC = {"name": "vanilla"}


def ladder(levels, heads=(), **kw):
    return structure(LadderSpec, {"levels": levels, "heads": list(heads), **kw})


def test_input_size_must_divide_the_total_downsampling():
    spec = ladder([{"encoder": {"name": "conv", "stride": 2}, "decoder": DEC},
                   {"encoder": {"name": "conv", "stride": 2}, "decoder": DEC}])
    with pytest.raises(ContractError) as err:
        build_ladder(spec, VIDEO)
    msg = str(err.value)
    assert msg.startswith("model.levels[1].encoder:") and "not divisible by the down-sampling factor 2" in msg


def test_spatial_cell_after_a_vector_level():
    spec = ladder([{"encoder": {"name": "lstm"}, "decoder": DEC}, {"encoder": {"name": "conv"}, "decoder": DEC}])
    with pytest.raises(ContractError, match=r"^model.levels\[1\].encoder: encoder_cell 'conv' needs a spatial input"):
        build_ladder(spec, VIDEO)


def test_every_level_needs_a_decoder_when_the_ladder_has_one():
    spec = ladder([{"encoder": {"name": "conv"}, "decoder": DEC}, {"encoder": {"name": "lstm"}}])
    with pytest.raises(ContractError, match=r"^model.levels\[1\].decoder: level 1 has no decoder cell"):
        build_ladder(spec, VIDEO)
    build_ladder(attrs.evolve(spec, decoder=False), VIDEO)  # fine without decoder


@pytest.mark.parametrize("head, fragment", [
    ({"name": "h", "source": "encoder.3"}, r"heads\[0\].source: 'encoder.3' names level 3, but the ladder has 2"),
    ({"name": "h", "source": "middle.0"}, r"heads\[0\].source: 'middle.0' is not"),
    ({"name": "h", "source": "encoder.0", "out": "classes"}, None),
])
def test_head_contracts(head, fragment):
    spec = ladder([{"encoder": {"name": "conv"}, "decoder": DEC}, {"encoder": {"name": "lstm"}, "decoder": DEC}],
                  [head])
    if fragment is None:
        assert build_ladder(spec, VIDEO).heads["h"].out == 4
        with pytest.raises(ContractError, match="dataset has no classes"):
            build_ladder(spec, attrs.evolve(VIDEO, num_classes=0))
    else:
        with pytest.raises(ContractError, match=fragment):
            build_ladder(spec, VIDEO)


def test_head_on_decoder_without_decoder():
    spec = ladder([{"encoder": {"name": "conv"}}], [{"name": "frame", "source": "decoder.0"}], decoder=False)
    with pytest.raises(ContractError, match="reads 'decoder.0', but the model has no decoder"):
        build_ladder(spec, VIDEO)


class ReadsTask(Task):
    def __init__(self, options, spec, label):
        super().__init__(label)
        self.outputs, self.keys = tuple(options.outputs), tuple(options.keys)

    def needs(self):
        return Needs(self.outputs, self.keys)

    def loss(self, outputs, batch):
        return sum(outputs[k].mean() for k in self.outputs)


@attrs.frozen
class ReadsOptions:
    outputs: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    weight: float = 1.0


class ReadsPlugin:
    @hookimpl
    def rladder_components(self):
        return [Component("task", "reads", ReadsTask, ReadsOptions, "Reads named outputs.")]


def test_every_task_input_must_exist():
    reg = get_registry()
    reg.add_plugin(ReadsPlugin(), "reads-plugin")
    spec = ladder([{"encoder": {"name": "conv"}, "decoder": DEC}, {"encoder": {"name": "lstm"}, "decoder": DEC}],
                  [{"name": "frame", "source": "decoder.0"}])
    model = build_ladder(spec, VIDEO)
    tasks = build_tasks({"ok": {"name": "reads", "outputs": ["heads.frame", "encoder.-1"], "keys": ["y"]}},
                        VIDEO, model, reg)
    assert set(tasks) == {"ok"}
    with pytest.raises(ContractError, match=r"^tasks.bad: task 'reads' reads heads.class, which the model"):
        build_tasks({"bad": {"name": "reads", "outputs": ["heads.class"]}}, VIDEO, model, reg)
    with pytest.raises(ContractError, match=r"^tasks.bad: task 'reads' needs batch key\(s\) mask, which the data"):
        build_tasks({"bad": {"name": "reads", "keys": ["mask"]}}, VIDEO, model, reg)


def test_build_run_from_a_config(tmp_path):
    cfg = load_config([ROOT / "configs/shapes/omm_rladder.toml"], ["model.levels.6.encoder.units=32"])
    run = build_run(cfg)
    assert run.spec.step_shape == (1, 32, 32) and run.model.shapes[-1] == (32,)
    # the same seed builds the same weights
    again = build_run(cfg)
    for (n, p), (_, q) in zip(run.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(p, q), n


def test_model_component_returning_garbage():
    reg = get_registry()

    class Bad:
        @hookimpl
        def rladder_components(self):
            return [Component("model", "bad", lambda o, spec: 42, description="Returns 42.")]

    reg.add_plugin(Bad(), "bad-model")
    with pytest.raises(ContractError, match="returned int, not a LadderSpec"):
        build_model({"name": "bad"}, VIDEO, reg)


@pytest.mark.parametrize("error", [ValueError, ContractError])
def test_a_factory_rejecting_its_shape_is_located_at_the_config_field(error):
    """A cell factory may reject a shape with ValueError or ContractError: either way the error names the
    level; a task's own ContractError that names its field already is not located twice."""
    def picky(options, in_shape, top_down=True):
        raise error(f"encoder_cell 'picky' needs a vector input (D,), got {tuple(in_shape)}")

    class Picky:
        @hookimpl
        def rladder_components(self):
            return [Component("encoder_cell", "picky", picky, description="Vectors only.")]

    reg = get_registry()
    reg.add_plugin(Picky(), "picky-plugin")
    spec = ladder([{"encoder": {"name": "conv"}, "decoder": DEC}, {"encoder": {"name": "picky"}, "decoder": DEC}])
    with pytest.raises(ContractError, match=r"^model.levels\[1\].encoder: encoder_cell 'picky' needs a vector input "
                                            r"\(D,\), got \(32, 30, 30\)$"):
        build_ladder(spec, VIDEO, reg)
    model = build_ladder(ladder([{"encoder": {"name": "lstm"}, "decoder": DEC}],
                                [{"name": "class", "source": "encoder.-1", "out": "classes"}]), VIDEO)
    with pytest.raises(ContractError, match=r"^tasks.c: classification needs a dataset with classes$"):
        build_tasks({"c": {"name": "classify"}}, attrs.evolve(VIDEO, num_classes=0), model, reg)

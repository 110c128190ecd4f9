"""Typed options: building attrs classes from TOML-like dicts, and the errors users see."""

from __future__ import annotations

import tomllib
from typing import Literal

import attrs
import pytest

from rladder.core import tomlout
from rladder.registry import OptionError, option, structure, unstructure
from rladder.registry.options import positive


@attrs.frozen
class Inner:
    width: int = option(4, help="Width.")


@attrs.frozen
class Opts:
    channels: int = option(32, help="Output channels.", validator=positive)
    rate: float = option(0.5, help="A rate.")
    mode: Literal["a", "b"] = option("a", help="A mode.")
    sizes: tuple[int, ...] = option((1, 2), help="Sizes.")
    maybe: int | None = option(None, help="Optional.")
    flag: bool = option(False, help="A flag.")
    inner: Inner = option(factory=Inner, help="Nested.")
    out: int | Literal["classes"] = option("classes", help="Union.")


def test_defaults_conversion_and_round_trip():
    o = structure(Opts, {"rate": 1, "sizes": [3, 4], "inner": {"width": 7}, "out": 5})
    assert o.rate == 1.0 and isinstance(o.rate, float) and o.sizes == (3, 4) and o.inner == Inner(7) and o.out == 5
    text = tomlout.dumps({"o": unstructure(o)})
    assert structure(Opts, tomllib.loads(text)["o"]) == o


def test_unknown_option_names_the_path_suggests_and_lists_options():
    with pytest.raises(OptionError) as err:
        structure(Opts, {"chanels": 3}, path="model.levels[0].encoder", what="encoder_cell 'x'")
    msg = str(err.value)
    assert msg.startswith("model.levels[0].encoder.chanels: unknown option 'chanels' for encoder_cell 'x'")
    assert "did you mean 'channels'" in msg
    assert "channels: int (default 32)  Output channels." in msg and "mode: 'a' | 'b' (default 'a')" in msg


@pytest.mark.parametrize("data, fragment", [
    ({"channels": "8"}, "channels: expected an integer"),
    ({"channels": True}, "channels: expected an integer"),
    ({"flag": 1}, "flag: expected true or false"),
    ({"mode": "c"}, "mode: expected one of 'a', 'b'"),
    ({"sizes": [1, "x"]}, "sizes[1]: expected an integer"),
    ({"inner": {"widht": 1}}, "inner.widht: unknown option"),
    ({"out": "class"}, "out: expected int | 'classes'"),
    ({"channels": 0}, "invalid value"),
])
def test_ill_typed_or_invalid_values(data, fragment):
    with pytest.raises(OptionError) as err:
        structure(Opts, data, path="sec")
    assert fragment in str(err.value)
    assert "Valid options:" in str(err.value)


def test_missing_required_option():
    @attrs.frozen
    class Req:
        name: str = option(help="Required.")

    with pytest.raises(OptionError, match="missing required option 'name'"):
        structure(Req, {})

"""A stand-in accelerator for the conformance kit: does a component follow the device of its inputs?

On a CPU-only machine nothing fails when a task makes ``torch.ones(B, T)`` without ``device=`` or
a dataset multiplies by a CPU constant: the bug shows only on a GPU ("Expected all tensors to be
on the same device"). The real ``meta`` device would catch it, but holds no data, so code with
data-dependent steps (torchmetrics' NaN checks, ``.item()``, boolean masks) cannot run there.

``on_other_device()`` is a context in which tensors made by ``elsewhere(t)`` report the device
``meta`` but hold CPU data. Inside it every op runs on that data, and, like CUDA:

* an op mixing such a tensor with a plain CPU tensor of one or more dimensions raises
  ``DeviceMismatch`` (CPU scalars, 0-dim tensors, indices and ``copy_`` are allowed, as on CUDA);
* results of ops on such tensors, and tensors created with ``device=<their device>``
  (``torch.zeros(..., device=x.device)``, ``x.new_zeros``, ``torch.tensor(..., device=...)``,
  ``t.to(x.device)``), are such tensors too; ``.cpu()``, ``.item()`` and ``float()`` work;
* ``nn.Module``\\ s (torchmetrics metrics included) move there with ``move(module)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

DEVICE = torch.device("meta")

# ops that accept a CPU tensor next to a CUDA one
_MIXING_ALLOWED = {"aten::copy_", "aten::_to_copy", "aten::index.Tensor", "aten::index_put_",
                   "aten::_index_put_impl_", "aten::_local_scalar_dense", "aten::lift_fresh"}
# Python-level factories that build on CPU internally and skip the dispatcher's modes
_FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray, torch.scalar_tensor}


class DeviceMismatch(RuntimeError):
    """An op mixed a tensor on the stand-in device with a CPU tensor."""


class Elsewhere(Tensor):
    """A CPU tensor that says it is on the stand-in device (``meta``); only usable inside the context."""

    inner: Tensor

    @staticmethod
    def __new__(cls, inner: Tensor):
        return Tensor._make_wrapper_subclass(cls, inner.shape, strides=inner.stride(),
                                             storage_offset=inner.storage_offset(), dtype=inner.dtype,
                                             device=DEVICE, requires_grad=False)

    def __init__(self, inner: Tensor):
        self.inner = inner

    def __repr__(self) -> str:  # noqa: D105
        return f"Elsewhere({self.inner!r})"

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        raise RuntimeError(f"{func}: a tensor on the conformance kit's stand-in device was used outside "
                           f"rladder.core.testing.device.on_other_device()")


def elsewhere(value: Any) -> Any:
    """``value`` with every CPU tensor in it (nested dicts, lists, tuples) on the stand-in device."""
    return tree_map(lambda t: Elsewhere(t.detach()) if isinstance(t, Tensor) and not isinstance(t, Elsewhere)
                    else t, value)


def is_elsewhere(t: Any) -> bool:
    return isinstance(t, Elsewhere)


def move(module: nn.Module) -> nn.Module:
    """Move a module's parameters, buffers and torchmetrics states to the stand-in device (in place)."""
    with torch.no_grad():
        return module._apply(lambda t: t if isinstance(t, Elsewhere) else Elsewhere(t.detach()))


class _Dispatch(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        seen_elsewhere = False
        cpu_shapes: list[tuple[int, ...]] = []

        def unwrap(t):
            nonlocal seen_elsewhere
            if isinstance(t, Elsewhere):
                seen_elsewhere = True
                return t.inner
            if isinstance(t, Tensor) and t.dim() > 0 and t.device.type == "cpu":
                cpu_shapes.append(tuple(t.shape))
            return t

        inner_args, inner_kwargs = tree_map(unwrap, args), tree_map(unwrap, kwargs)
        device = inner_kwargs.get("device")
        if device is not None and torch.device(device) == DEVICE:
            inner_kwargs["device"] = torch.device("cpu")
            to_elsewhere = True
        else:
            to_elsewhere = device is None and seen_elsewhere
        name = func._schema.name + (f".{func._schema.overload_name}" if func._schema.overload_name else "")
        if seen_elsewhere and cpu_shapes and device is None and name not in _MIXING_ALLOWED \
                and func._schema.name not in _MIXING_ALLOWED:
            raise DeviceMismatch(f"Expected all tensors to be on the same device, but found at least two devices, "
                                 f"{DEVICE.type} and cpu! ({func}: a CPU tensor of shape {cpu_shapes[0]} next to "
                                 f"tensors on the device of the inputs)")
        out = func(*inner_args, **inner_kwargs)
        if not to_elsewhere:
            return out
        first = args[0] if args else None
        if isinstance(first, Elsewhere) and out is first.inner:      # an in-place op returns its input
            return first
        return tree_map(lambda t: Elsewhere(t) if isinstance(t, Tensor) else t, out)


class _Functions(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        device = kwargs.get("device")
        if func in _FACTORIES and device is not None and torch.device(device) == DEVICE:
            kwargs["device"] = "cpu"
            data = args[0] if args else kwargs.get("data")
            if isinstance(data, Elsewhere):
                args = (data.inner, *args[1:])
            return Elsewhere(func(*args, **kwargs))
        return func(*args, **kwargs)


@contextlib.contextmanager
def on_other_device() -> Iterator[torch.device]:
    """The context in which tensors on the stand-in device work (see the module docstring)."""
    with _Functions(), _Dispatch():
        yield DEVICE

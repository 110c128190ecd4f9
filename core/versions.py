"""What a run's figures depend on besides its configuration: the installed rladder version (saved
with runs, checkpoints and shards) and the machine's floating-point path (saved with runs).

Two runs of one configuration are bit-identical only on the same numerics: the CPU's vector ISA
picks the convolution kernels (oneDNN) and ATen's vectorised loops, and the thread count changes the
order of the reductions. One step of difference in the last bits grows over a few thousand steps into
a different model (docs/results.md, "Same code, another machine").
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

# the CPU flags that change which kernels oneDNN and ATen choose for fp32 / bf16 work
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def rladder_version() -> str:
    from importlib.metadata import version
    return version("rladder")


def _cpuinfo() -> tuple[str, list[str]]:
    """(model name, ISA flags of _ISA_FLAGS present) from /proc/cpuinfo; without it, platform's name and []."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        import platform
        return platform.processor(), []
    fields = dict(line.split(":", 1) for line in text.splitlines()[:64] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", ""), [f for f in _ISA_FLAGS if f in flags]


def numerics(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The machine's floating-point path as a run records it (meta.json ``numerics``).

    ``cpu_capability`` is ATen's choice (ATEN_CPU_CAPABILITY can lower it); ``onednn_max_cpu_isa``
    the ONEDNN_MAX_CPU_ISA cap ("" = the CPU's best); ``threads`` torch's intra-op thread count;
    ``gpu`` the CUDA device's name ("" on CPU).
    """
    model, flags = _cpuinfo()
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return {"cpu": model, "cpu_flags": flags, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", ""), "threads": torch.get_num_threads(),
            "gpu": gpu}


def describe_numerics(n: dict[str, Any] | None) -> str:
    """One line for logs and tables: 'AMD EPYC, AVX512, 1 thread' (GPU runs: the GPU's name)."""
    if not n:
        return "not recorded"
    if n.get("gpu"):
        return str(n["gpu"])
    isa = n.get("cpu_capability", "?")
    if n.get("onednn_max_cpu_isa"):
        isa += f", ONEDNN_MAX_CPU_ISA={n['onednn_max_cpu_isa']}"
    threads = n.get("threads", "?")
    return f"{n.get('cpu') or 'unknown CPU'}, {isa}, {threads} thread{'s' * (threads != 1)}"

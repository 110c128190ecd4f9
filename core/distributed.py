"""Multi-process training with torch.distributed (DDP): launching, joining, and small collectives.

`rladder train CONFIG --nproc N` starts N worker processes through torch.distributed's own
launcher (the engine of `torchrun`); `torchrun --nproc-per-node N -m rladder.core train CONFIG`
does the same. A worker finds RANK, WORLD_SIZE and LOCAL_RANK in its environment, joins the
process group (gloo on CPU, NCCL on GPU) and trains its share of every batch. If a worker dies,
the launcher stops the others and the run fails with an error naming the rank; collectives time
out after RLADDER_DIST_TIMEOUT seconds (default 300) instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence

import attrs
import torch
import torch.distributed as torch_dist

from rladder.registry import RladderError



@attrs.frozen
class Dist:
    """Where this process sits in a multi-process run (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


class WorkerFailed(RladderError):
    """A worker process of a multi-process run failed."""


def from_env() -> Dist | None:
    """The Dist of this process when a launcher started it with WORLD_SIZE > 1, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def join(dist: Dist, device: str = "auto") -> None:
    """Join the process group: NCCL when this run trains on CUDA, else gloo."""
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(dist.local_rank)
    torch_dist.init_process_group("nccl" if use_cuda else "gloo", rank=dist.rank, world_size=dist.world,
                                  timeout=_timeout())


def _timeout() -> datetime.timedelta:
    """How long a collective (or the meeting before leaving) may wait: RLADDER_DIST_TIMEOUT seconds."""
    return datetime.timedelta(seconds=float(os.environ.get("RLADDER_DIST_TIMEOUT", "300")))


def leave(*, meet: bool = True) -> None:
    """Leave the process group once every process has finished its collectives, then destroy it.

    gloo tears its connections down at once; a process that does so while a peer is still
    completing the last collective can make that peer abort ("terminate called without an
    active exception", seen once in CI at the end of a 2-process run). So the processes first
    meet through the rendezvous store (plain TCP, not gloo) before the group is destroyed.

    ``meet=False`` is for a process that fails: it must not wait for the others (they may be
    blocked in a collective it will never join); the launcher stops them when it exits.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if meet:
        _meet_in_store("rladder/leave")
    torch_dist.destroy_process_group()


def _meet_in_store(key: str) -> None:
    """Wait until every process has reached this point, through the default group's key-value store."""
    world = torch_dist.get_world_size()
    try:
        store = torch_dist.distributed_c10d._get_default_store()
        if store.add(f"{key}/arrived", 1) == world:
            store.set(f"{key}/all", "1")
        store.wait([f"{key}/all"], _timeout())
    except (RuntimeError, AttributeError, ValueError):
        # A store that is gone (its host process ended first) means the others have left already.
        pass


def launch(worker_args: Sequence[str], nproc: int, nnodes: int = 1, node_rank: int = 0,
           master_addr: str = "127.0.0.1", master_port: int | None = None) -> None:
    """Run ``python -m rladder.core <worker_args>`` in ``nproc`` processes on this node."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes), "--monitor-interval", "0.5"]
    if nnodes == 1 and master_port is None:
        args.append("--standalone")
    else:
        args += ["--node-rank", str(node_rank), "--master-addr", master_addr,
                 "--master-port", str(master_port or 29500)]
    args += ["-m", "rladder.core", *worker_args]
    try:
        run(get_args_parser().parse_args(args))
    except ChildFailedError as exc:
        failures = "; ".join(f"rank {rank} exited with {f.exitcode}"
                             + (f" ({f.message})" if getattr(f, "message", "") else "")
                             for rank, f in sorted(exc.failures.items()))
        raise WorkerFailed(f"a worker process failed, so the run stopped: {failures}. The other workers were "
                           f"stopped; the last checkpoint written is kept.") from None

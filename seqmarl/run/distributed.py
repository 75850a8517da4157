"""Several processes, one run: ``torch.distributed`` process groups as ``torchrun`` starts them.

seqmarl launches nothing itself: ``torchrun`` (or ``accelerate launch``, or an ``srun`` wrapper
that sets the same variables) starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` joins the process group
(gloo on CPU, NCCL on CUDA). :class:`DistContext` is the handful of collectives the trainer and
the learner need, and does nothing for one process, so the one-process path is unchanged.

``data_parallel``: every rank holds all N agents and plays its share of the iteration's prompts;
the learner gathers each agent's rollout batch so advantages, whitening, baselines, running
reward moments and the KL controller see the global batch, walks the same global minibatches
on every rank (each rank computes the rows it holds), and all-reduces each agent's gradients
itself, over ``agent.parameters()``: a DDP wrapper would sync only the adapter active when it
was wrapped, and the agents of a shared base are adapters of one module.

When a rank dies or stops answering, the others' next collective fails (at once for a closed
connection, after ``distributed.timeout_s`` for silence); :func:`lost_peer` tells such a
failure from a bug, and the CLI turns it into one :class:`PeerLost` line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from seqmarl.errors import ConfigError, SeqmarlError

__all__ = ["DistContext", "PeerLost", "env_world_size", "lost_peer", "setup", "torchrun_command"]

STRATEGIES = ("single", "data_parallel", "fsdp")

#: Gradients are all-reduced in flat buckets of at most this many elements.
BUCKET_NUMEL = 1 << 24


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def torchrun_command() -> str:
    """The ``torchrun`` launch of this run's shape (one node: ``--standalone``), for messages."""
    world = env_world_size()
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        local = world
    if local >= world:
        return f"torchrun --standalone --nproc_per_node {world}"
    return f"torchrun --nnodes {world // local} --nproc_per_node {local} (and its rendezvous)"


#: Where gloo's transport errors come from (a closed connection, a timed-out send or receive);
#: gloo raises them as plain ``RuntimeError``.
GLOO_TRANSPORT = "/gloo/transport/"


class PeerLost(SeqmarlError):
    """Another rank exited or stopped answering; this rank cannot go on (exit status 1)."""

    exit_code = 1


def lost_peer(
    exc: BaseException, rank: int, world_size: int, timeout_s: int | None = None
) -> str | None:
    """What ``exc`` says of a lost rank (``"lost rank 1: its connection closed ..."``), or ``None``.

    ``None`` unless ``exc`` is a communication failure: a :class:`torch.distributed.DistError`
    (NCCL's, the store's, a failed connection) or a ``RuntimeError`` from gloo's transport.
    Anything else is a bug and keeps its traceback. The lost rank is named when it is knowable
    (with two processes, the other one).
    """
    text = str(exc)
    if not isinstance(exc, dist.DistError) and not (
        isinstance(exc, RuntimeError) and GLOO_TRANSPORT in text
    ):
        return None
    peer = f"rank {1 - rank}" if world_size == 2 else "a peer rank"
    if "timed out" in text.lower() or "timeout" in text.lower():
        within = f"={timeout_s} s" if timeout_s is not None else ""
        return f"lost {peer}: no answer within distributed.timeout_s{within} (stopped or hung)"
    if "closed by peer" in text or "reset by peer" in text:
        return f"lost {peer}: its connection closed (it exited or was killed)"
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return f"lost {peer}: communication failed ({first})"


@dataclass
class DistContext:
    """This process's place in the run.

    Attributes:
        strategy: ``single``, ``data_parallel`` or ``fsdp``.
        rank: Global rank (0 = the one that writes logs and checkpoints).
        world_size: Number of processes.
        local_rank: Rank on this node (selects ``cuda:LOCAL_RANK``).
    """

    strategy: str = "single"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether collectives run (more than one process)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ collectives
    def _device(self, t: torch.Tensor) -> torch.Tensor:
        backend = dist.get_backend()
        if backend == "nccl" and t.device.type != "cuda":
            return t.to(f"cuda:{torch.cuda.current_device()}")
        return t

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """``t`` reduced over ranks (``sum``, ``max`` or ``min``), in place; returned."""
        if not self.enabled:
            return t
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        work = self._device(t)
        dist.all_reduce(work, op=ops[op])
        if work is not t:
            t.copy_(work)
        return t

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (every rank gets the same answer)."""
        if not self.enabled:
            return flag
        return bool(self.all_reduce(torch.tensor([int(flag)]), "max").item())

    def all_gather_rows(
        self, x: torch.Tensor, rows: list[int] | None = None, width: int | None = None
    ) -> torch.Tensor:
        """Concatenate every rank's ``(n_r, T_r, ...)`` rows, right-padding dim 1 with zeros.

        Ranks may hold different row counts and different ``T``; the result is
        ``(sum n_r, max T_r, ...)`` in rank order, the same on every rank. ``rows`` (every
        rank's ``n_r``) and ``width`` (``max T_r``) save a gather of the shapes when the caller
        already has them.
        """
        if not self.enabled:
            return x
        if rows is None or (width is None and x.dim() > 1):
            shapes = self.gather_objects(tuple(x.shape))
            rows = [s[0] for s in shapes]
            width = max(s[1] for s in shapes) if x.dim() > 1 else None
        n = max(rows)
        if x.dim() > 1:
            padded = x.new_zeros((n, width, *x.shape[2:]))
            padded[: x.shape[0], : x.shape[1]] = x
        else:
            padded = x.new_zeros((n,))
            padded[: x.shape[0]] = x
        work = self._device(padded.contiguous())
        out = [torch.empty_like(work) for _ in range(self.world_size)]
        dist.all_gather(out, work)
        return torch.cat([o[:r].to(x.device) for o, r in zip(out, rows, strict=True)])

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.enabled:
            dist.barrier()

    def all_reduce_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum each parameter's gradient over ranks, in flat buckets (a missing grad is zero).

        Every rank must call this with the same parameters in the same order.
        """
        if not self.enabled:
            return
        bucket: list[torch.nn.Parameter] = []
        size = 0
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            bucket.append(p)
            size += p.numel()
            if size >= BUCKET_NUMEL:
                self._reduce_bucket(bucket)
                bucket, size = [], 0
        if bucket:
            self._reduce_bucket(bucket)

    def _reduce_bucket(self, bucket: list[torch.nn.Parameter]) -> None:
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        self.all_reduce(flat)
        offset = 0
        for p in bucket:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n


_OWN_GROUP = False  # whether seqmarl made the default process group (not, say, vLLM)


def teardown() -> bool:
    """Destroy the default process group if :func:`setup` made it; whether it did.

    A group made by someone else stays: a vLLM engine running in this process makes its own
    (world size 1) and destroys it when it shuts down.
    """
    global _OWN_GROUP
    mine, _OWN_GROUP = _OWN_GROUP, False
    if mine and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return mine


def setup(strategy: str = "single", timeout_s: int = 3600) -> DistContext:
    """Join the process group torchrun set up, for ``strategy``.

    Raises:
        ConfigError: ``single`` under ``WORLD_SIZE > 1`` (every rank would train its own copy
            and race the others on one folder), or an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"distributed.strategy: unknown {strategy!r}; choose one of {', '.join(STRATEGIES)}"
        )
    world = env_world_size()
    if strategy == "single":
        if world > 1:
            raise ConfigError(
                f"distributed.strategy=single, but this is one of {world} processes "
                "(WORLD_SIZE is set by the launcher): add distributed.strategy=data_parallel, "
                "or launch one process"
            )
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        from datetime import timedelta

        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        global _OWN_GROUP
        _OWN_GROUP = True
    return DistContext(strategy=strategy, rank=rank, world_size=world, local_rank=local_rank)

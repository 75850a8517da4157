"""``ShardedCopyPolicy``: an agent's full copy sharded over the processes with FSDP2.

``distributed.strategy=fsdp`` with ``agents.mode=separate``: each agent's copy and the frozen
reference are split over the ranks with :func:`torch.distributed.fsdp.fully_shard` (one unit
per transformer block, named by the model's ``_no_split_modules``, plus the root), so a rank
holds 1/W of every copy and N copies of a model too big for one device train together. Every
forward all-gathers a block's weights and every backward reduce-scatters its gradients, so
all ranks must make the same model calls: decoding runs until every rank's batch is done
(finished rows add padding), teacher-forced passes use one packed call, the learner gives
every rank as many chunks (:mod:`seqmarl.train.learner`), and all ranks decode to the same length.

Checkpoints gather each copy and its optimizer state whole on rank 0
(:mod:`torch.distributed.checkpoint.state_dict`), so they have the one-process layout; loading
hands every rank the full state and each keeps its shard. The value head is small and stays
replicated; the learner all-reduces its gradients like any unsharded parameter.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from seqmarl.agents.separate import SeparateCopyPolicy

__all__ = ["ShardedCopyPolicy", "build_sharded", "shard"]


def shard(model: nn.Module) -> nn.Module:
    """``fully_shard`` each transformer block of ``model``, then the rest; in place.

    Gradients are summed over ranks, not averaged: the learner weights each rank's loss by
    its share of the global minibatch.
    """
    from torch.distributed.fsdp import FSDPModule, fully_shard

    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in blocks:
            fully_shard(module)
    # the root too: left unsharded after a no-grad pass (sampling), its parameters would be
    # plain tensors when the optimizer and the learner next see them
    fully_shard(model, reshard_after_forward=True)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)  # plain SUM: what gloo supports
    return model


def build_sharded(model: nn.Module, agent_ids: Sequence[str], settings) -> tuple[nn.Module, dict]:
    """A trainable copy per agent and the frozen reference, each sharded over the ranks.

    Not :func:`~seqmarl.agents.pool.build_separate` then sharding: each copy is sharded as
    soon as it is made, so building holds at most two whole models on a device.
    """
    copies = {}
    for agent_id in agent_ids:
        twin = copy.deepcopy(model)
        for p in twin.parameters():
            p.requires_grad_(True)
        copies[agent_id] = shard(twin)
    reference = shard(model)
    return reference, {a: {"model": copies[a], "reference": reference} for a in agent_ids}


def _max_over_ranks(value: int) -> int:
    """The largest ``value`` over the ranks (on the GPU when the backend is NCCL)."""
    device = "cpu"
    if dist.get_backend() == "nccl":
        device = f"cuda:{torch.cuda.current_device()}"
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


class ShardedCopyPolicy(SeparateCopyPolicy):
    """A :class:`SeparateCopyPolicy` whose copy (and reference) are FSDP2-sharded."""

    _share_prompts = False
    lockstep = True

    def clip_grad_norm(self, max_norm: float) -> float:
        """Clip the global norm of sharded (DTensor) and replicated gradients together.

        The squares of each rank's shards are summed over the ranks and added to the
        replicated gradients' squares (the value head); the scale is then that of
        ``torch.nn.utils.clip_grad_norm_`` on the whole gradient.
        """
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        shards = [g.to_local() for g in grads if hasattr(g, "full_tensor")]
        plain = [g for g in grads if not hasattr(g, "full_tensor")]
        sq = torch.zeros((), dtype=torch.float64, device=shards[0].device if shards else "cpu")
        for g in shards:
            sq += g.double().pow(2).sum()
        dist.all_reduce(sq)
        for g in plain:
            sq += g.double().pow(2).sum().to(sq.device)
        total = float(sq.sqrt())
        coef = min(max_norm / (total + 1e-6), 1.0)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
        return total

    @staticmethod
    def _all_done(mine: bool) -> bool:
        return _max_over_ranks(0 if mine else 1) == 0

    def _agree_length(self, max_new_tokens: int) -> int:
        return _max_over_ranks(max_new_tokens)

    def _container(self) -> nn.Module:
        mods = {"policy": self.model}
        if self.value_head is not None:
            mods["value_head"] = self.value_head
        return nn.ModuleDict(mods)

    def _lm_state_dict(self) -> dict[str, torch.Tensor]:
        """The whole copy on rank 0 (a collective; other ranks get an empty dict)."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(self.model, options=_options(cpu_offload=True))

    def _load_lm_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(self.model, state, options=_options())

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict:
        """The optimizer's state gathered whole on rank 0 (a collective)."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(
            self._container(), optimizer, options=_options(cpu_offload=True)
        )

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Each rank takes its shard of a whole optimizer state."""
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(self._container(), optimizer, state, options=_options())

    def save_pretrained(self, path: str | Path) -> None:
        """Gather the copy (every rank must call this); rank 0 writes the folder."""
        from safetensors.torch import save_file

        state = self._lm_state_dict()
        if dist.get_rank() != 0:
            return
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, state_dict=state)
        self.tokenizer.save_pretrained(path)
        if self.value_head is not None:
            head = {k: v.contiguous() for k, v in self.value_head.state_dict().items()}
            save_file(head, str(path / "value_head.safetensors"))

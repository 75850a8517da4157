"""A team of agents over several base models: one :class:`~seqmarl.agents.pool.AgentPool` each.

``agents.per_agent.<id>`` gives an agent its own model (``model``, its files, ``dtype``,
``mode``, ``lora``). Agents whose settings name the same base share it (one frozen base with an
adapter each, or copies of it), so a team is a list of pools, one per distinct base, in the
order of the agents they hold. Each agent samples with its own tokenizer (its own pad id, chat
template and context length) and its KL is to its own base.

A team stands where a pool does: it maps agent ids to policies and answers ``tokenizer`` and
``device`` for the game and the sampling generator. The task's tokenizer (a task that counts
prompt tokens) is the first agent's. All bases live on one device (the sampling generator is
one stream).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from seqmarl.agents.base import Policy
from seqmarl.errors import ConfigError

__all__ = ["AgentTeam"]


class AgentTeam:
    """Agents over several bases.

    Args:
        groups: One :class:`~seqmarl.agents.pool.AgentPool` per base.
        agent_ids: Every agent, in the run's order.

    Attributes:
        groups: The pools, one per base.
        agents: Agent id -> its policy, in ``agent_ids`` order.
    """

    def __init__(self, groups: Sequence[Any], agent_ids: Sequence[str]):
        self.groups = list(groups)
        self.agent_ids = tuple(agent_ids)
        held = {a: g for g in self.groups for a in g.agent_ids}
        if sorted(held) != sorted(self.agent_ids):
            raise ValueError(f"the groups hold {sorted(held)}, not {sorted(self.agent_ids)}")
        self._group_of = held
        self.agents: dict[str, Policy] = {a: held[a][a] for a in self.agent_ids}
        devices = {str(g.device) for g in self.groups}
        if len(devices) > 1:
            raise ConfigError(
                f"agents.per_agent: a team's bases must share one device, got {sorted(devices)}; "
                "set agents.device (or each agent's) to one device"
            )

    def __getitem__(self, agent_id: str) -> Policy:
        return self.agents[agent_id]

    def __iter__(self) -> Iterator[Policy]:
        return iter(self.agents.values())

    def sampled_elsewhere(self, agent_id: str) -> bool:
        """Whether an engine, not the trained weights, samples ``agent_id``."""
        return self.group_of(agent_id).sampled_elsewhere(agent_id)

    def play_begins(self) -> None:
        """Before an iteration's play: every group."""
        for g in self.groups:
            g.play_begins()

    def play_ends(self) -> dict[str, float]:
        """After it: every group's engine time, summed."""
        out: dict[str, float] = {}
        for g in self.groups:
            for k, v in g.play_ends().items():
                out[k] = out.get(k, 0.0) + v
        return out

    @property
    def saves_on_every_rank(self) -> bool:
        """Whether any group's agents gather on every rank to save."""
        return any(g.saves_on_every_rank for g in self.groups)

    def group_of(self, agent_id: str) -> Any:
        """The pool holding ``agent_id``."""
        return self._group_of[agent_id]

    @property
    def tokenizer(self):
        """The first agent's tokenizer (the one a task counts prompt tokens with)."""
        return self.group_of(self.agent_ids[0]).tokenizer

    @property
    def device(self) -> torch.device:
        """Where every base lives."""
        return self.groups[0].device

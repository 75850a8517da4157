"""What a checkpoint was made of, and the check that a resumed run keeps it.

A resumed run keeps what its checkpoint was made of (:func:`run_signature`): the model (each
agent's, in a team of different models), how the agents hold it, the agent ids and each agent's
algorithm. Overrides may change everything else (iterations, learning rates, logging, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqmarl.config import RunConfig
from seqmarl.errors import ConfigError

__all__ = ["check_resume", "run_signature"]


def run_signature(cfg: RunConfig) -> dict[str, Any]:
    """What a checkpoint of ``cfg`` is made of, by config field.

    Keys are dotted config fields, so a mismatch names the field to fix. The agents' algorithm
    decides whether they carry a value head and what algorithm state they have.
    """
    a = cfg.agents
    setting = cfg.setting.build()
    sig: dict[str, Any] = {
        "agents.model": a.model,
        "agents.gguf_file": a.gguf_file,
        "agents.tokenizer": a.tokenizer,
        "agents.mode": a.mode,
        "agents.dtype": a.dtype,
        "setting.num_agents": setting.num_agents,
        # sharded copies keep their optimizer state by parameter name, unsharded by position
        "distributed.strategy": (
            "fsdp" if cfg.distributed.strategy == "fsdp" else "single or data_parallel"
        ),
    }
    if a.mode == "shared":
        for k, v in a.lora.model_dump(mode="json").items():
            sig[f"agents.lora.{k}"] = v
    for agent_id, own in a.per_agent.items():  # a team of different models: each its own
        sig[f"agents.per_agent.{agent_id}"] = own.model_dump(mode="json", exclude_none=True)
    for agent_id in setting.agent_ids:
        field = f"algos.{agent_id}.name" if agent_id in cfg.algos else "algo.name"
        sig[f"{field} ({agent_id})"] = cfg.algo_for(agent_id).name
    return sig


def check_resume(saved: dict[str, Any] | None, cfg: RunConfig, checkpoint: Path) -> None:
    """Refuse a resume whose config contradicts what the checkpoint was made of.

    Args:
        saved: The checkpoint's :func:`run_signature` (``None`` for old checkpoints: no check).
        cfg: The config of the resumed run (the run's config.yaml plus overrides).
        checkpoint: The checkpoint, for the message.

    Raises:
        ConfigError: The first field that differs, both values, and the way out.
    """
    if not saved:
        return
    now = run_signature(cfg)
    # an agent's algorithm may be named through algo.name or algos.<id>.name: compare per agent
    by_agent = {k.rsplit(" (", 1)[-1]: (k, v) for k, v in saved.items() if k.endswith(")")}
    for key, value in now.items():
        if key.endswith(")"):
            agent = key.rsplit(" (", 1)[-1]
            if agent not in by_agent:
                continue  # a new agent id shows up as a num_agents mismatch
            old = by_agent[agent][1]
            field = key.split(" (")[0]
        else:
            if key not in saved:
                continue
            old, field = saved[key], key
        if old != value:
            raise ConfigError(
                f"--resume: {field}={value!r} does not match the checkpoint {checkpoint.name} "
                f"(trained with {old!r}); a resumed run keeps its model, adapters, agents and "
                "algorithms. Drop that override, or start a new run with --out"
            )

"""The rollout hands the task's stop strings to sampling and the env sees the cut text."""

import torch

from seqmarl import envs
from seqmarl.train.rollout import play


def test_rollout_stops_at_the_tasks_stop_strings(make_pool, monkeypatch):
    pool = make_pool(agent_ids=("llm_0", "llm_1"), max_new_tokens=24, stop_at_eos=False)
    env = envs.make("arithmetic-v0", num_agents=2)
    monkeypatch.setattr(type(env.task), "stop_strings", ("e",), raising=False)
    seen = []
    real = type(pool.agents["llm_0"]).sample

    def spy(self, prompts, **kw):
        seen.append(kw.get("stop_strings"))
        return real(self, prompts, **kw)

    monkeypatch.setattr(type(pool.agents["llm_0"]), "sample", spy)
    prompts = env.task.sample_prompts(4, 0)
    roll = play(
        env.as_game(),
        pool.agents,
        prompts,
        ["llm_0", "llm_1"],
        copies=2,
        generator=torch.Generator().manual_seed(0),
    )
    assert seen == [("e",), ("e",)]
    for agent_id in ("llm_0", "llm_1"):
        texts = roll.completions[agent_id].texts
        assert all("e" not in t for t in texts)
    # the observer's observation holds the pioneer's cut text
    for obs, pioneer in zip(
        roll.observations["llm_1"], roll.completions["llm_0"].texts, strict=True
    ):
        assert pioneer.strip() in obs  # (the template strips whitespace)

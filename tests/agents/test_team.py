"""Teams of different base models: agents.per_agent.<id>.model, one pool per base.

The two bases differ in architecture (llama, GPT-2), width, vocabulary and pad id: the GPT-2
folder's tokenizer has a ``<pad>`` token of its own (id 257, vocabulary 258) where the
embedded tiny llama pads with its eos (id 256, vocabulary 257).
"""

import pytest
import torch

from seqmarl.agents.team import AgentTeam
from seqmarl.config import load_config
from seqmarl.errors import ConfigError
from seqmarl.run.checkpoint import latest_checkpoint, load_checkpoint
from seqmarl.run.sinks import read_jsonl
from seqmarl.train.trainer import Trainer
from tests.tiny_models import save_padded_model

from ..test_trainer import strip_timing


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    return save_padded_model(tmp_path_factory.mktemp("gpt2-pad"), "gpt2", seed=7)


def team_cfg(folder, *extra, num_agents=2, who=("llm_1",)):
    return load_config(
        None,
        [
            "model=embedded:tiny-llama",
            *(f"agents.per_agent.{a}.model={folder}" for a in who),
            "env=arithmetic-v0",
            "setting=cory",
            f"num_agents={num_agents}",
            "batch_size=3",
            "agents.generation.max_new_tokens=4",
            "algo.params.epochs=1",
            "train.progress=false",
            "train.tensorboard=false",
            "train.checkpoint_every=2",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    ("mode", "algo"), [("shared", "ppo"), ("separate", "grpo"), ("shared", "grpo")]
)
def test_a_team_of_two_bases_trains_each_agent_on_its_own(tmp_path, gpt2_folder, mode, algo):
    extra = [f"agents.mode={mode}", f"algo={algo}"]
    extra += ["algo.params.group_size=2"] if algo == "grpo" else []
    trainer = Trainer(team_cfg(gpt2_folder, *extra, "iterations=2"), tmp_path)
    team = trainer.pool
    assert isinstance(team, AgentTeam) and len(team.groups) == 2
    llama, gpt2 = team.group_of("llm_0"), team.group_of("llm_1")
    assert llama.tokenizer.pad_token_id == 256 and gpt2.tokenizer.pad_token_id == 257
    record, roll = trainer.step()
    for agent, pad in (("llm_0", 256), ("llm_1", 257)):  # each agent's rows, its own padding
        comp = roll.completions[agent]
        assert (comp.response_ids[comp.response_mask == 0] == pad).all()
        assert int(comp.response_ids.max()) < (257 if agent == "llm_0" else 258)
        assert record[f"agent/{agent}/loss_policy"] == record[f"agent/{agent}/loss_policy"]
    # llm_1's KL reference is its own base: the GPT-2 folder's log-probs, not the llama's
    from transformers import AutoModelForCausalLM

    from seqmarl.agents.sampling import response_forward

    comp = roll.completions["llm_1"]
    base = AutoModelForCausalLM.from_pretrained(gpt2_folder).eval()
    with torch.no_grad():
        want = response_forward(base, comp)[0]
        got = team["llm_1"].reference(comp)[0]
    mask = comp.response_mask.bool()
    assert torch.allclose(got[mask], want[mask], atol=1e-5)
    trainer.iteration += 1
    trainer.step()


def test_three_agents_two_on_one_base_share_it(tmp_path, gpt2_folder):
    cfg = team_cfg(gpt2_folder, "iterations=1", num_agents=3, who=("llm_1", "llm_2"))
    trainer = Trainer(cfg, tmp_path)
    team = trainer.pool
    assert [g.agent_ids for g in team.groups] == [("llm_0",), ("llm_1", "llm_2")]
    assert team["llm_1"].model is team["llm_2"].model  # one frozen base, an adapter each
    trainer.fit()
    for a in ("llm_0", "llm_1", "llm_2"):
        assert (tmp_path / "agents" / a / "adapter_config.json").exists()
    # eval loads the team back, each agent on its own base with its trained weights
    from seqmarl.eval.evaluate import load_trained_pool

    loaded = load_trained_pool(tmp_path, trainer.cfg)
    assert isinstance(loaded, AgentTeam)
    for a in ("llm_0", "llm_1", "llm_2"):
        want = trainer.pool[a].state_dict()
        assert all(torch.equal(v, want[k]) for k, v in loaded[a].state_dict().items())


def test_a_resumed_team_run_equals_the_uninterrupted_one(tmp_path, gpt2_folder):
    extra = ["agents.mode=separate", "algo=grpo", "algo.params.group_size=2"]
    Trainer(team_cfg(gpt2_folder, *extra, "iterations=3"), tmp_path / "full").fit()
    Trainer(team_cfg(gpt2_folder, *extra, "iterations=2"), tmp_path / "half").fit()
    Trainer(team_cfg(gpt2_folder, *extra, "iterations=3"), tmp_path / "half", resume=True).fit()
    full = strip_timing(read_jsonl(tmp_path / "full" / "metrics.jsonl"))
    assert strip_timing(read_jsonl(tmp_path / "half" / "metrics.jsonl")) == full
    a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "half" / "checkpoints"))
    for agent in a["learners"]:
        for k, v in a["learners"][agent]["agent"].items():
            assert torch.equal(v, b["learners"][agent]["agent"][k]), (agent, k)
    # resuming with another base for an agent is refused in one line, naming the field
    other = team_cfg("embedded:tiny-gpt2", *extra, "iterations=6")
    with pytest.raises(ConfigError, match=r"agents\.per_agent\.llm_1=.*does not match"):
        Trainer(other, tmp_path / "half", resume=True)


def test_bad_per_agent_settings_get_one_line():
    with pytest.raises(ConfigError, match=r"agents\.per_agent: unknown agent id\(s\) \['llm_7'\]"):
        team_cfg("embedded:tiny-gpt2", who=("llm_7",))
    with pytest.raises(ConfigError, match=r"agents\.per_agent\.llm_1\.modle"):
        load_config(None, ["setting=cory", "agents.per_agent.llm_1.modle=x"])
    with pytest.raises(ConfigError, match=r"distributed\.strategy=fsdp yet"):
        team_cfg("embedded:tiny-gpt2", "agents.mode=separate", "distributed.strategy=fsdp")
    # one base named twice is no team: the run is a homogeneous one
    cfg = team_cfg("embedded:tiny-llama")
    assert {cfg.agents.for_agent(a).base_key() for a in ("llm_0", "llm_1")} == {
        cfg.agents.for_agent("llm_0").base_key()
    }


def test_a_league_whose_fixed_opponent_is_another_model(tmp_path, gpt2_folder):
    league = ["league.opponents=[llm_1]", "league.fixed=[base]", "iterations=2"]
    trainer = Trainer(team_cfg(gpt2_folder, *league), tmp_path)
    before = {k: v.clone() for k, v in trainer.pool["llm_1"].state_dict().items()}
    trainer.fit()
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert all("league/llm_1/win_rate" in r for r in records)
    assert all(
        "agent/llm_0/loss_policy" in r and "agent/llm_1/loss_policy" not in r for r in records
    )
    after = trainer.pool["llm_1"].state_dict()  # the GPT-2 opponent played, never learned
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    # its snapshots would need llm_0's base: refused in one line, naming the way out
    with pytest.raises(
        ConfigError, match=r"league\.snapshot_every: a snapshot of llm_0 plays only"
    ):
        team_cfg(gpt2_folder, *league, "league.snapshot_every=1")


def test_each_agent_samples_with_its_own_generation_settings(tmp_path, gpt2_folder):
    """agents.per_agent.<id>.generation: its fields over the run's, on one base or another."""
    # llm_1 on the GPT-2 and llm_2 on llm_0's base: each samples as its own settings say
    cfg = team_cfg(
        gpt2_folder,
        "iterations=1",
        "agents.per_agent.llm_1.generation.max_new_tokens=2",
        "agents.per_agent.llm_2.generation.max_new_tokens=6",
        "agents.per_agent.llm_2.generation.temperature=0.5",
        num_agents=3,
    )
    trainer = Trainer(cfg, tmp_path)
    team = trainer.pool
    assert [g.agent_ids for g in team.groups] == [("llm_0", "llm_2"), ("llm_1",)]
    g = {a: team[a].generation for a in ("llm_0", "llm_1", "llm_2")}
    assert [g[a].max_new_tokens for a in g] == [4, 2, 6]
    assert [g[a].temperature for a in g] == [1.0, 1.0, 0.5]
    _, roll = trainer.step()
    widths = {a: roll.completions[a].response_ids.shape[1] for a in g}
    assert widths == {"llm_0": 4, "llm_1": 2, "llm_2": 6}  # random weights: no early EOS
    # a field that is not a sampling setting gets one line naming it
    with pytest.raises(ConfigError, match=r"agents\.per_agent\.llm_1\.generation\.tempratur"):
        team_cfg(gpt2_folder, "agents.per_agent.llm_1.generation.tempratur=0.5")

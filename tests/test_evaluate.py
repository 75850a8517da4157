"""``seqmarl eval``: argument order, --model against a run, --agent, rewards, samples, files."""

import json

import pytest
import torch

from seqmarl.cli import build_parser, main
from seqmarl.config import load_config
from seqmarl.errors import ConfigError
from seqmarl.eval.evaluate import evaluate, select_agents, untrained_pool
from seqmarl.train.trainer import Trainer

RUN = [
    "model=embedded:tiny-llama",
    "env=arithmetic-v0",
    "task.kwargs={max_operand: 3, ops: '*'}",
    "setting.reward_matrix=competitive",
    "iterations=2",
    "batch_size=2",
    "agents.generation.max_new_tokens=3",
    "agents.generation.temperature=0.9",
    "algo.params.epochs=1",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained two-agent competitive run (one per module: a few CPU seconds)."""
    out = tmp_path_factory.mktemp("run")
    Trainer(load_config(None, RUN), out).fit()
    return out


def read(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("command", ["train", "eval"])
def test_options_and_items_parse_in_any_order(command):
    parser = build_parser()
    orders = [
        [command, "x.yaml", "--out", "o", "train.seed=1", "iterations=3"],
        [command, "--out", "o", "x.yaml", "train.seed=1", "iterations=3"],
        [command, "x.yaml", "train.seed=1", "--out", "o", "iterations=3"],
    ]
    parsed = [parser.parse_args(argv) for argv in orders]
    assert all(p.items == ["x.yaml", "train.seed=1", "iterations=3"] for p in parsed)
    assert all(p.out == "o" for p in parsed)


def test_eval_overrides_after_options_and_never_overwrites(run, tmp_path, capsys):
    out = tmp_path / "e"
    # the form documented in examples/cory_gsm8k.yaml: overrides after options
    assert main(["eval", str(run), "--prompts", "2", "--out", str(out), "train.seed=7"]) == 0
    first = capsys.readouterr().out
    assert main(["eval", "--prompts", "3", "--out", str(out), str(run), "train.seed=8"]) == 0
    second = capsys.readouterr().out
    assert main(["eval", str(run), "--prompts", "2", "--out", str(out)]) == 0
    third = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["eval-2.json", "eval-3.json", "eval.json"]
    assert f"wrote {out / 'eval.json'}" in first
    assert f"wrote {out / 'eval-2.json'}" in second
    assert f"wrote {out / 'eval-3.json'}" in third
    a, b = read(out / "eval.json"), read(out / "eval-2.json")
    assert (a["num_prompts"], b["num_prompts"]) == (2, 3)  # the first file was kept
    assert (a["config"]["train"]["seed"], b["config"]["train"]["seed"]) == (7, 8)


def test_eval_reports_trained_reward_and_what_each_agent_observed(run, capsys):
    assert main(["eval", str(run), "--prompts", "4"]) == 0
    out = capsys.readouterr().out
    res = read(run / "eval" / "eval.json")
    agents = res["agents"]
    assert set(agents) == {"llm_0", "llm_1"} and res["seats"] == ["llm_0", "llm_1"]
    # competitive C = [[1, -1], [-1, 1]]: the trained reward is the difference of task rewards
    r0, r1 = agents["llm_0"]["task_reward"], agents["llm_1"]["task_reward"]
    assert agents["llm_0"]["reward"] == pytest.approx(r0 - r1)
    assert agents["llm_1"]["reward"] == pytest.approx(r1 - r0)
    assert "reward " in out and "task_reward " in out and "kl " in out
    assert len(res["samples"]) == 4
    for s in res["samples"]:
        first, second = s["agents"]["llm_0"], s["agents"]["llm_1"]
        assert (first["seat"], second["seat"]) == (0, 1)
        question = s["prompt"].splitlines()[0]
        assert first["observation"] == s["prompt"] and question in second["observation"]
        assert second["observation"] != first["observation"]  # the observer sees the pioneer
        if first["response"].strip():
            assert first["response"].strip() in second["observation"]
        assert first["reward"] == pytest.approx(first["task_reward"] - second["task_reward"])


def test_eval_model_in_a_run_uses_the_runs_task_setting_and_generation(run, tmp_path, capsys):
    out = tmp_path / "base"
    argv = ["eval", str(run), "--model", "embedded:tiny-llama", "--prompts", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    res = read(out / "eval.json")
    cfg = load_config(run / "config.yaml")
    assert res["config"]["agents"]["generation"] == cfg.agents.generation.model_dump(mode="json")
    assert res["config"]["agents"]["generation"]["max_new_tokens"] == 3
    assert res["setting"] == "cory" and set(res["agents"]) == {"llm_0", "llm_1"}
    assert all("*" in s["prompt"] for s in res["samples"])  # the run's task kwargs
    assert all(row["kl"] == pytest.approx(0.0, abs=1e-5) for row in res["agents"].values())
    # without a run, --model is one agent in setting single (the defaults' generation)
    argv = ["eval", "--model", "embedded:tiny-llama", "env=arithmetic-v0", "--prompts", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "llm_0 (seat 0)" in printed and "llm_1" not in printed.split("setting single")[1]


def test_eval_agent_alone_uses_that_agents_weights(run):
    cfg = load_config(run / "config.yaml")
    pool = untrained_pool(cfg)
    with torch.no_grad():
        for p in pool["llm_1"].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    res = evaluate(cfg, pool, num_prompts=3, batch_size=3, alone=["llm_1", "llm_0"])
    assert res["alone"] and res["setting"] == "single" and list(res["agents"]) == ["llm_1", "llm_0"]
    assert res["agents"]["llm_0"]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert res["agents"]["llm_1"]["kl"] > 1e-3  # its own (perturbed) weights answered
    for row in res["agents"].values():
        assert row["seat"] == 0 and row["reward"] == row["task_reward"]  # alone: C = [[1]]
    for s in res["samples"]:  # both answered the same prompt, each seeing only the prompt
        assert set(s["agents"]) == {"llm_0", "llm_1"}
        assert s["agents"]["llm_0"]["observation"] == s["agents"]["llm_1"]["observation"]


def test_agent_ids_are_checked_and_listed(run, tmp_path, capsys):
    cfg = load_config(run / "config.yaml")
    assert select_agents(cfg, ["llm_1,llm_0", "llm_1"]) == ["llm_1", "llm_0"]
    with pytest.raises(ConfigError, match="its agents are llm_0, llm_1"):
        select_agents(cfg, ["llm_2"])
    assert main(["eval", str(run), "--agent", "llm_9", "--prompts", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "seqmarl: error: --agent 'llm_9': no such agent in this run; its agents are llm_0, llm_1"
    ]
    argv = ["eval", str(run), "--agent", "llm_1", "--prompts", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert main(["eval", "--model", "embedded:tiny-llama", "--agent", "llm_0"]) == 2
    assert "give the run folder" in capsys.readouterr().err
    res = read(tmp_path / "eval.json")
    assert list(res["agents"]) == ["llm_1"] and res["agents"]["llm_1"]["seat"] == 0


def test_pass_at_k_of_chosen_agents_never_overwrites(run, tmp_path, capsys):
    argv = ["eval", str(run), "--pass-k", "2", "--prompts", "2", "--agent", "llm_1"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    assert main([*argv, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["llm_1"]  # only the chosen agent
    names = sorted(p.name for p in (tmp_path / "llm_1").iterdir())
    assert names == sorted(f"passk{s}.{e}" for s in ("", "-2") for e in ("json", "md", "png"))
    assert f"wrote {tmp_path / 'llm_1' / 'passk-2.json'}" in printed


def test_eval_of_a_multi_round_run_scores_every_turn(tmp_path):
    """3 rounds of number-guess, 2 prompts: 6 turns per agent, each scored and in the KL."""
    cfg = load_config(
        None,
        [
            "model=embedded:tiny-llama",
            "env=number-guess-v0",
            "task.rounds=3",
            "iterations=1",
            "batch_size=2",
            "agents.generation.max_new_tokens=3",
            "train.progress=false",
            "train.tensorboard=false",
        ],
    )
    pool = untrained_pool(cfg)
    calls = {a: [] for a in pool.agents}
    for a, agent in pool.agents.items():
        real = agent.reference

        def spy(comp, *args, real=real, a=a, **kw):
            calls[a].append(comp.response_mask.shape[0])
            return real(comp, *args, **kw)

        agent.reference = spy
    result = evaluate(cfg, pool, num_prompts=2, batch_size=2, seed=3)
    for a, stats in result["agents"].items():
        assert stats["turns"] == 6, (a, stats)  # 3 rounds x 2 prompts
        assert calls[a] == [6]  # the KL covers every turn, not round 0's 2 rows
    sample = result["samples"][0]
    assert len(sample["turns"]) == 6  # the whole transcript: 3 rounds x 2 seats
    assert [t["agent"] for t in sample["turns"]] == ["llm_0", "llm_1"] * 3

from pathlib import Path

import pytest

from seqmarl.config import RunConfig, load_config, parse_kwargs, parse_overrides
from seqmarl.errors import ConfigError


def test_defaults_are_valid_and_build_a_setting():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.setting.build().num_agents == 2
    assert cfg.algo_for("llm_1").name == "ppo"
    assert cfg.algo.build().kl_coef == 0.3


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "task: {env: arithmetic-v0, kwargs: {max_operand: 5}}\n"
        "setting: {name: cory, num_agents: 3, reward_matrix: competitive}\n"
        "algos:\n  llm_1: {name: reinforce, params: {lr: 0.001}}\n"
        "train: {iterations: 7}\n"
    )
    cfg = load_config(path, ["train.iterations=9", "seed=3", "algo.params.epochs=2"])
    assert cfg.task.kwargs == {"max_operand": 5}
    assert cfg.train.iterations == 9 and cfg.train.seed == 3
    assert cfg.algo_for("llm_0").name == "ppo" and cfg.algo_for("llm_0").build().epochs == 2
    assert cfg.algo_for("llm_1").build().lr == 0.001
    assert cfg.setting.build().coef_matrix[0, 1] == -1.0


def test_top_level_shortcuts():
    cfg = load_config(
        overrides=[
            "env=arithmetic-v0",
            "setting=cory",
            "num_agents=3",
            "algo=grpo",
            "model=/m",
            "iterations=20",
            "batch_size=16",
            "seed=1",
        ]
    )
    assert (cfg.task.env, cfg.setting.name, cfg.setting.num_agents, cfg.algo.name) == (
        "arithmetic-v0",
        "cory",
        3,
        "grpo",
    )
    assert (cfg.agents.model, cfg.train.iterations, cfg.train.batch_size, cfg.train.seed) == (
        "/m",
        20,
        16,
        1,
    )


def test_override_values_are_yaml_typed():
    assert parse_overrides(["a.b=1", "a.c=0.5", "a.d=true", "a.e=[[1,-1],[-1,1]]", "a.f=text"]) == {
        "a": {"b": 1, "c": 0.5, "d": True, "e": [[1, -1], [-1, 1]], "f": "text"}
    }
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["iterations"])


def test_flat_kwargs_read_values_as_task_kwargs_overrides_do():
    items = ["limit=50", "split=test", "one_shot=false", "tag=[1, 2]", "seed=3", "name="]
    got = parse_kwargs(items)
    assert got == {
        "limit": 50,
        "split": "test",
        "one_shot": False,
        "tag": [1, 2],
        "seed": 3,
        "name": "",
    }
    assert type(got["limit"]) is int and got["one_shot"] is False
    # the same values as train's task.kwargs.<key>=<value>; keys are not shortcuts (seed=)
    assert got == parse_overrides([f"task.kwargs.{i}" for i in items])["task"]["kwargs"]
    with pytest.raises(ConfigError, match="task argument 'limit': expected key=value"):
        parse_kwargs(["limit"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["setting.num_agent=3"], "setting.num_agent: unknown field (did you mean 'num_agents'?)"),
        (
            ["num_agents=0"],
            "setting.num_agents: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            ["env=arithmetc-v0"],
            "task.env: unknown env 'arithmetc-v0'. Did you mean 'arithmetic-v0'?",
        ),
        (
            ["algo=ppp"],
            "algo.name: unknown algorithm 'ppp'. Did you mean 'ppo'? Registered algorithms: grpo, ppo, reinforce, rloo",
        ),
        (["algo.params.lr=-1"], "algo.params.lr: Input should be greater than 0"),
        (["algo.params.clip=0.1"], "algo.params.clip: unknown field"),
        (
            ["algos.llm_5.name=ppo"],
            "algos: unknown agent id(s) ['llm_5']; this setting has llm_0, llm_1",
        ),
        (["setting.reward_matrix=[[1,2],[3]]"], "setting.reward_matrix: expected a 2x2"),
        (
            ["setting=single", "num_agents=2"],
            "setting.num_agents: setting 'single' needs exactly 1 agent(s)",
        ),
        (
            ["setting.schedule=shuffle"],
            "setting.schedule: Input should be 'fixed', 'rotate' or 'permutations'",
        ),
        (["agents.mode=lora"], "agents.mode: Input should be 'shared' or 'separate'"),
        (
            ["agents.generation.min_new_tokens=30"],
            "min_new_tokens (30) must be <= max_new_tokens (16)",
        ),
        (["train.iterations=many"], "train.iterations: Input should be a valid integer"),
        (
            ["bogus=1"],
            "bogus: unknown field; allowed: imports, import_files, task, setting, agents, algo, algos, train, league, distributed; shortcuts: env",
        ),
    ],
)
def test_config_errors_name_the_field_and_the_fix(overrides, message):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    text = str(info.value)
    assert message in text
    assert "\n" not in text  # one line


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


def test_example_configs_validate():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml")):
        load_config(path)


def test_configuration_doc_example_runs(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    text = (root / "docs" / "configuration.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope = {}
    exec(code, scope)
    assert scope["setting"].num_agents == 4 and scope["ppo"].epochs == 2


# ------------------------------------------------ per-agent entries start from algo.params
def test_shared_params_reach_an_agent_with_another_algorithm():
    # the reported case: llm_1 trained at grpo's default lr 1e-5 while llm_0 had 1e-3
    cfg = load_config(overrides=["algo.params.lr=0.001", "algos.llm_1={name: grpo}"])
    assert cfg.algo_for("llm_0").build().lr == 0.001
    assert cfg.algo_for("llm_1").build().lr == 0.001
    assert cfg.algos["llm_1"].params == {"lr": 0.001}  # resolved in the config itself
    assert cfg.algo_for("llm_1").build().group_size == 4  # grpo's own defaults otherwise


def test_same_algorithm_entry_keeps_the_other_shared_params():
    cfg = load_config(
        overrides=[
            "algo.params.lr=0.001",
            "algo.params.epochs=3",
            "algo.params.vf_coef=0.2",
            "algos.llm_1.params.epochs=2",
        ]
    )
    one = cfg.algo_for("llm_1").build()
    assert (one.lr, one.epochs, one.vf_coef) == (0.001, 2, 0.2)
    assert cfg.algo_for("llm_0").build().epochs == 3


def test_an_agents_own_param_wins_over_the_shared_one():
    cfg = load_config(
        overrides=["algo.params.lr=0.001", "algos.llm_1.name=grpo", "algos.llm_1.params.lr=0.01"]
    )
    assert cfg.algo_for("llm_1").build().lr == 0.01
    assert cfg.algo_for("llm_0").build().lr == 0.001


def test_a_shared_param_the_other_algorithm_lacks_is_dropped(caplog):
    # vf_coef is PPO's own (value head); grpo takes kl_coef, every algorithm has it
    with caplog.at_level("INFO", logger="seqmarl.config"):
        cfg = load_config(
            overrides=[
                "algo.params.vf_coef=0.2",
                "algo.params.kl_coef=0.1",
                "algos.llm_1.name=grpo",
            ]
        )
    assert cfg.algos["llm_1"].params == {"kl_coef": 0.1}
    assert cfg.algo_for("llm_1").build().kl_coef == 0.1
    assert "algos.llm_1 (grpo): shared algo.params vf_coef not used" in caplog.text


def test_resolved_per_agent_params_round_trip(tmp_path):
    import yaml

    cfg = load_config(
        overrides=["algo.params.lr=0.001", "algo.params.vf_coef=0.2", "algos.llm_1.name=rloo"]
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    assert yaml.safe_load(path.read_text())["algos"]["llm_1"]["params"] == {"lr": 0.001}
    again = load_config(path)
    assert again == cfg
    assert load_config(path, ["train.seed=4"]).algos == cfg.algos  # validating again: no change


def test_an_inherited_value_the_other_algorithm_rejects_is_named():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["algo.params.group_size=1", "algos.llm_1.name=grpo"])
    assert "algos.llm_1.params.group_size: Input should be greater than or equal to 2" in str(
        info.value
    )
    assert "inherited from algo.params" in str(info.value)


# ------------------------------------------------ group sizes agree before anything loads
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            ["algo=grpo", "algos.llm_1.name=rloo", "algos.llm_1.params.group_size=8"],
            "algos.llm_1.params.group_size: agents ask for different group sizes "
            "(llm_0 4 from grpo's default, llm_1 8 from algos.llm_1.params.group_size)",
        ),
        (
            [
                "algo=rloo",
                "algo.params.group_size=3",
                "algos.llm_1.name=grpo",
                "algos.llm_1.params.group_size=2",
            ],
            "(llm_0 3 from algo.params.group_size, llm_1 2 from algos.llm_1.params.group_size)",
        ),
    ],
)
def test_different_group_sizes_fail_in_the_config(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides)
    text = str(info.value)
    assert field in text
    assert "set algo.params.group_size" in text and "\n" not in text


def test_group_size_one_and_shared_sizes_are_fine():
    # ppo's 1 does not count; a shared group_size reaches the grpo entry too
    cfg = load_config(
        overrides=[
            "algo=rloo",
            "algo.params.group_size=6",
            "num_agents=3",
            "algos.llm_1.name=grpo",
            "algos.llm_2.name=ppo",
            "algos.llm_2.params.group_size=1",
        ]
    )
    assert [cfg.algo_for(a).build().group_size for a in ("llm_0", "llm_1", "llm_2")] == [6, 6, 1]


def test_configuration_doc_per_agent_example_resolves_as_it_says():
    import yaml

    root = Path(__file__).resolve().parents[1]
    section = (root / "docs" / "configuration.md").read_text().split("## Per-agent algorithms")[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    said = yaml.safe_load(block.split("# resolves to", 1)[1])
    assert RunConfig.model_validate(yaml.safe_load(block)).algos["llm_1"].params == said


def test_mixed_algos_example_resolves_to_the_reinforce_settings_it_was_run_with():
    root = Path(__file__).resolve().parents[1]
    reinforce = load_config(root / "examples" / "mixed_algos.yaml").algo_for("llm_1").build()
    assert (reinforce.lr, reinforce.epochs, reinforce.kl_coef) == (2.0e-4, 1, 0.1)
    assert (reinforce.adaptive_kl, reinforce.baseline_decay) == (False, 0.9)


def test_a_setting_is_built_once_per_value(monkeypatch):
    """Validation and every later reader share one built setting until a field changes."""
    import seqmarl.config as config_mod

    calls = []
    real = config_mod.make_setting

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(config_mod, "make_setting", counting)
    cfg = load_config(overrides=["setting=cory", "algos.llm_1.name=grpo"])
    built = len(calls)
    assert built == 1  # the setting's own check, then every model validator reads that one
    first = cfg.setting.build()
    assert cfg.setting.build() is first and len(calls) == built
    cfg.setting.num_agents = 3
    assert cfg.setting.build().num_agents == 3 and len(calls) == built + 1

"""A model folder that needs its own code is refused in one line; none of its code runs."""

import json

import pytest

from seqmarl.cli import main


@pytest.fixture
def remote_code_model(tmp_path):
    """A folder asking for remote code: an auto_map, a made-up model_type and a .py to run."""
    folder = tmp_path / "model"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "seqmarl-made-up-lm",
                "architectures": ["MadeUpForCausalLM"],
                "auto_map": {
                    "AutoConfig": "modeling_made_up.MadeUpConfig",
                    "AutoModelForCausalLM": "modeling_made_up.MadeUpForCausalLM",
                },
            }
        )
    )
    (folder / "modeling_made_up.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return folder, marker


@pytest.mark.parametrize("command", ["eval", "train"])
def test_a_remote_code_model_is_one_line_naming_the_field(
    remote_code_model, tmp_path, capsys, command
):
    folder, marker = remote_code_model
    if command == "eval":
        argv = ["eval", "--model", str(folder), "--prompts", "1"]
    else:
        argv = ["train", f"model={folder}", "iterations=1", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("seqmarl: error: agents.model:")
    assert "agents.trust_remote_code=true" in err[0] and "seqmarl-made-up-lm" in err[0]
    assert not marker.exists()


def test_transformers_own_refusal_is_one_line_too(monkeypatch, capsys):
    """A hub id is not read beforehand: transformers' ValueError becomes the same line."""
    import seqmarl.agents.loading as loading

    def refuse(*args, **kwargs):
        raise ValueError(
            "The repository some/model contains custom code which must be executed to "
            "correctly load the model.\nPlease pass the argument `trust_remote_code=True`."
        )

    monkeypatch.setattr(loading.AutoTokenizer, "from_pretrained", refuse)
    assert main(["eval", "--model", "some/model", "--prompts", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "agents.trust_remote_code=true" in err[0], err


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_run_folder_cannot_turn_remote_code_on_by_itself(
    remote_code_model, tmp_path, capsys, command
):
    folder, marker = remote_code_model
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        f"agents:\n  model: {json.dumps(str(folder))}\n  trust_remote_code: true\n"
    )
    argv = ["eval", str(run), "--prompts", "1"] if command == "eval" else ["train", "--resume"]
    if command == "resume":
        argv.append(str(run))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("seqmarl: error: agents.trust_remote_code: ")
    assert "on the command line" in err[0]
    assert not marker.exists()

"""A YAML syntax error in a config file is one line with file:line:column."""

import pytest
import yaml

from seqmarl.config import load_config
from seqmarl.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("train:\n  iterations: 2\n    bad: 1\n", ":3:8", "mapping values are not allowed here"),
        (
            "train: [1, 2\nagents: {}\n",
            ":2:7",
            "expected ',' or ']', but got ':' (while parsing a flow sequence started at line 1)",
        ),
        (
            'task:\n  env: "arith\n',
            ":3:1",
            "found unexpected end of stream (while scanning a quoted scalar started at line 2)",
        ),
    ],
)
def test_yaml_syntax_error_is_one_line_with_file_line_column(tmp_path, text, where, problem):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg == f"config file {path}{where}: not valid YAML: {problem}"
    assert "^" not in msg and "\n" not in msg


def test_yaml_error_without_a_mark_falls_back_to_the_message(tmp_path, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_text("train: {}\n")

    def broken(_text):
        raise yaml.YAMLError("reader failed\n  on this input")

    monkeypatch.setattr(yaml, "safe_load", broken)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"config file {path}: not valid YAML: reader failed on this input"

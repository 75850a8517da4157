"""User code through seqmarl.run.plugins: module:attr ids and config imports, in process."""

import sys
import textwrap

import pytest

from seqmarl import envs
from seqmarl.config import load_config
from seqmarl.errors import ConfigError, SeqmarlError
from seqmarl.run.plugins import PluginError


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A folder on sys.path holding user modules; forgets them and their envs afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before_mods, before_envs = set(sys.modules), set(envs.ENVS._items)

    def write(name, code):
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))

    yield write
    for m in set(sys.modules) - before_mods:
        sys.modules.pop(m)
    for e in set(envs.ENVS._items) - before_envs:
        envs.ENVS._items.pop(e)


TASKS = """
    from seqmarl import envs

    class ZTask(envs.TextTask):
        def sample_prompts(self, n, rng=None):
            return [envs.Prompt("Say z:") for _ in range(n)]

        def score(self, prompt, response):
            return float("z" in response)

    def make_z():
        return ZTask()

    envs.register_env("zz-v0", ZTask)
"""


def test_module_attr_ids_report_what_went_wrong(user_dir):
    user_dir("ztasks", TASKS)
    user_dir("zbroken", "import json\nraise ValueError('no data file zz.jsonl')\n")
    assert envs.make("ztasks:ZTask", num_agents=2).task.__class__.__name__ == "ZTask"
    with pytest.raises(PluginError) as info:
        envs.make("ztasks:Z")
    assert str(info.value) == (
        "env 'ztasks:Z': module 'ztasks' (ztasks.py) has no attribute 'Z'; "
        "it defines: ZTask, make_z"
    )
    with pytest.raises(PluginError) as info:
        envs.make("zbroken:Task")
    assert str(info.value) == (
        "env 'zbroken:Task': could not import module 'zbroken': "
        "ValueError: no data file zz.jsonl (zbroken.py, line 2)"
    )
    assert isinstance(info.value, SeqmarlError)  # the CLI prints it as one line
    with pytest.raises(PluginError, match=r"could not import module 'znope': no module named"):
        envs.make("znope:Task")


def test_config_imports_happen_before_the_env_is_checked(user_dir):
    user_dir("ztasks", TASKS)
    with pytest.raises(ConfigError, match="unknown env 'zz-v0'.*imports: \\[MODULE\\]"):
        load_config(None, ["env=zz-v0"])
    cfg = load_config(None, ["imports=[ztasks]", "env=zz-v0"])
    assert cfg.imports == ["ztasks"] and cfg.task.env == "zz-v0"
    cfg = load_config(None, ["env=ztasks:ZTask"])  # the env's module is recorded too
    assert cfg.imports == ["ztasks"]
    with pytest.raises(PluginError, match="config imports: could not import module 'zmissing'"):
        load_config(None, ["imports=[zmissing]"])

"""User envs from the command line: the current folder, --import, config imports, entry points.

Every test runs ``python -m seqmarl`` in a fresh process from ``tmp_path`` with only this
checkout on PYTHONPATH, so ``my_tasks.py`` in ``tmp_path`` is found through the current-folder
rule and nothing else.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

MY_TASKS = """
    from seqmarl import envs


    class RhymeTask(envs.TextTask):
        \"\"\"Answer with a word that rhymes with cat.\"\"\"

        def sample_prompts(self, n, rng=None):
            return [envs.Prompt("A word that rhymes with cat:", reference="at") for _ in range(n)]

        def score(self, prompt, response):
            return float(response.strip().endswith("at"))


    envs.register_env("rhyme-v0", RhymeTask)
"""

TINY = [
    "model=embedded:tiny-llama",
    "iterations=2",
    "batch_size=2",
    "agents.generation.max_new_tokens=4",
    "train.progress=false",
]


def seqmarl(cwd, *args, extra_path=(), script=None):
    """``python -m seqmarl ARGS`` in ``cwd``; with ``script``, that file runs instead."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *map(str, extra_path)])}
    launch = [str(script)] if script else ["-m", "seqmarl"]
    return subprocess.run(
        [sys.executable, *launch, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(folder, name, code):
    (folder / name).write_text(textwrap.dedent(code))


def one_error_line(proc):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_module_attr_id_resolves_from_the_current_folder(tmp_path):
    write(tmp_path, "my_tasks.py", MY_TASKS)
    proc = seqmarl(tmp_path, "check-env", "my_tasks:RhymeTask")
    assert proc.returncode == 0, proc.stderr
    assert "7/7: all checks passed" in proc.stdout
    # `python -m` puts the cwd on sys.path itself; the installed `seqmarl` script does not
    # (its own folder goes there), so run a launcher like it from another folder
    (tmp_path / "bin").mkdir()
    launcher = tmp_path / "bin" / "seqmarl"
    launcher.write_text("import sys\nfrom seqmarl.cli import main\nsys.exit(main())\n")
    proc = seqmarl(tmp_path, "check-env", "my_tasks:RhymeTask", script=launcher)
    assert proc.returncode == 0 and "7/7: all checks passed" in proc.stdout, proc.stderr
    line = one_error_line(seqmarl(tmp_path, "check-env", "my_tasks:Rhyme"))
    assert line == (
        "seqmarl: error: env 'my_tasks:Rhyme': module 'my_tasks' (my_tasks.py) has no "
        "attribute 'Rhyme'; it defines: RhymeTask"
    )
    # the rule is the current folder: from elsewhere the module is not found, and it says so
    line = one_error_line(seqmarl(tmp_path.parent, "check-env", "my_tasks:RhymeTask"))
    assert line.startswith(
        "seqmarl: error: env 'my_tasks:RhymeTask': could not import module 'my_tasks': "
        "no module named 'my_tasks' in the current folder"
    )


def test_import_option_makes_registered_ids_usable(tmp_path):
    write(tmp_path, "my_tasks.py", MY_TASKS)
    proc = seqmarl(tmp_path, "check-env", "--import", "my_tasks", "rhyme-v0", "--num-agents", "3")
    assert proc.returncode == 0, proc.stderr
    assert "7/7: all checks passed" in proc.stdout
    proc = seqmarl(tmp_path, "list", "--json", "--import", "my_tasks")
    assert "rhyme-v0" in json.loads(proc.stdout)["envs"]
    proc = seqmarl(tmp_path, "list", "--json")
    assert "rhyme-v0" not in json.loads(proc.stdout)["envs"]
    line = one_error_line(seqmarl(tmp_path, "check-env", "rhyme-v0"))
    assert "unknown env 'rhyme-v0'" in line and "--import MODULE" in line


def test_config_imports_key(tmp_path):
    write(tmp_path, "my_tasks.py", MY_TASKS)
    (tmp_path / "run.yaml").write_text("imports: [my_tasks]\ntask:\n  env: rhyme-v0\n")
    # setting.num_agent is misspelt on purpose: the env check passed if only that is reported
    proc = seqmarl(tmp_path, "train", "run.yaml", "setting.num_agent=3")
    line = one_error_line(proc)
    assert "setting.num_agent: unknown field" in line and "rhyme-v0" not in line


def test_import_errors_show_the_real_error_in_one_line(tmp_path):
    write(tmp_path, "my_tasks.py", "import json\nimport rhymes\n")
    line = one_error_line(seqmarl(tmp_path, "check-env", "my_tasks:RhymeTask"))
    assert line == (
        "seqmarl: error: env 'my_tasks:RhymeTask': could not import module 'my_tasks': "
        "ModuleNotFoundError: No module named 'rhymes' (my_tasks.py, line 2)"
    )
    line = one_error_line(seqmarl(tmp_path, "list", "--import", "my_tasks"))
    assert line.startswith("seqmarl: error: --import: could not import module 'my_tasks': ")
    line = one_error_line(seqmarl(tmp_path, "list", "--import", "my_taks"))
    assert "could not import module 'my_taks': no module named 'my_taks'" in line
    (tmp_path / "run.yaml").write_text("imports: [my_tasks]\n")
    line = one_error_line(seqmarl(tmp_path, "train", "run.yaml"))
    assert line.startswith("seqmarl: error: config imports: could not import module 'my_tasks'")


def test_entry_point_envs_are_listed_and_usable(tmp_path):
    site = tmp_path / "site"
    dist = site / "rhymeplug-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rhymeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[seqmarl.envs]\nrhymes = rhymeplug_envs:register\n")
    code = textwrap.dedent(MY_TASKS).replace('envs.register_env("rhyme-v0", RhymeTask)', "")
    code += '\ndef register():\n    envs.register_env("plugrhyme-v0", RhymeTask)\n'
    (site / "rhymeplug_envs.py").write_text(code)
    proc = seqmarl(tmp_path, "list", "--json", extra_path=[site])
    assert proc.returncode == 0, proc.stderr
    assert "plugrhyme-v0" in json.loads(proc.stdout)["envs"]
    proc = seqmarl(tmp_path, "check-env", "plugrhyme-v0", extra_path=[site])
    assert proc.returncode == 0 and "7/7: all checks passed" in proc.stdout, proc.stderr
    # a broken plugin is named, with its distribution and the real error
    (site / "rhymeplug_envs.py").write_text("raise RuntimeError('no rhyme table')\n")
    line = one_error_line(seqmarl(tmp_path, "check-env", "plugrhyme-v0", extra_path=[site]))
    assert "entry point 'rhymes'" in line and "'rhymeplug'" in line
    assert "RuntimeError: no rhyme table" in line


def test_train_records_imports_and_eval_names_them(tmp_path):
    write(tmp_path, "my_tasks.py", MY_TASKS)
    proc = seqmarl(tmp_path, "train", "--import", "my_tasks", "env=rhyme-v0", *TINY, "--out", "run")
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["imports"] == ["my_tasks"] and saved["task"]["env"] == "rhyme-v0"
    # a run folder's config imports nothing by itself: the line says which --import allows it
    line = one_error_line(seqmarl(tmp_path, "eval", "run", "--prompts", "2"))
    assert "names module 'my_tasks'" in line and line.endswith("pass --import my_tasks")
    proc = seqmarl(tmp_path, "eval", "run", "--prompts", "2", "--import", "my_tasks")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert result["num_prompts"] == 2 and set(result["agents"]) == {"llm_0", "llm_1"}
    assert "rhymes with cat" in proc.stdout  # the samples are the user's prompts


def test_custom_task_example_from_the_command_line():
    examples = REPO / "examples"
    proc = seqmarl(examples, "check-env", "--import", "custom_task", "polite-reply-v0")
    assert proc.returncode == 0 and "7/7: all checks passed" in proc.stdout, proc.stderr

"""The import graph of seqmarl: no circle, and no arrow from a low layer to a higher one.

Every import counts, at the top of a file or inside a function: a lazy import that closes a
circle is still a circle, only hidden until the function runs.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "seqmarl"

#: The layers, lowest first. A module may import from its own layer and the layers below it:
#: a folder (``seqmarl/run/``) or one top-level module (``seqmarl/config.py``) is one layer.
#: ``envs``, ``agents`` and ``algos`` are one level but do not import each other.
BASE = ["seqmarl.errors", "seqmarl.schema", "seqmarl.ops", "seqmarl.types"]
ABOVE_RUN = ["seqmarl.method", "seqmarl.envs", "seqmarl.agents", "seqmarl.algos"]
ABOVE_PARTS = ["seqmarl.config", "seqmarl.train", "seqmarl.eval", "seqmarl.cli", "seqmarl.__main__"]

#: What each part of the library may not import (prefixes of module names).
FORBIDDEN = {
    **{base: ["seqmarl."] for base in BASE},
    "seqmarl.run": ABOVE_RUN + ABOVE_PARTS,
    "seqmarl.method": ["seqmarl.envs", "seqmarl.agents", "seqmarl.algos", *ABOVE_PARTS],
    "seqmarl.agents": ["seqmarl.method", "seqmarl.envs", "seqmarl.algos", *ABOVE_PARTS],
    "seqmarl.envs": ["seqmarl.agents", "seqmarl.algos", *ABOVE_PARTS],
    "seqmarl.algos": ["seqmarl.method", "seqmarl.envs", "seqmarl.agents", *ABOVE_PARTS],
    "seqmarl.config": ABOVE_PARTS[1:],
    "seqmarl.train": ABOVE_PARTS[2:],
    "seqmarl.eval": ABOVE_PARTS[3:],
}

#: The only modules outside a folder: the base, the config and the command line.
TOP_LEVEL = {*BASE, "seqmarl", "seqmarl.config", "seqmarl.cli", "seqmarl.__main__"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package upwards
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                # "from pkg import sub" imports the module pkg.sub when there is one
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


GRAPH = _graph()


def test_the_graph_is_read():
    assert "seqmarl.envs.game" in GRAPH["seqmarl.train.rollout"]
    assert "seqmarl.agents.config" in GRAPH["seqmarl.config"]
    assert len(GRAPH) > 50


def test_no_import_circle():
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_no_arrow_points_up(layer):
    wrong = []
    for module, edges in GRAPH.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for target in edges:
            if target.startswith(layer + ".") or target == layer:
                continue
            if any(target == f or target.startswith(f) for f in FORBIDDEN[layer]):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_module_is_in_a_layer():
    """A new module goes into a folder (a layer), not beside the few top-level ones."""
    stray = [m for m in GRAPH if m.count(".") == 1 and m not in TOP_LEVEL and m not in FORBIDDEN]
    assert stray == [], f"put these in a folder of seqmarl/: {stray}"
    folders = {m.split(".")[1] for m in GRAPH if m.count(".") >= 2}
    assert folders == {"agents", "algos", "envs", "eval", "method", "run", "train"}


def test_paths_from_a_module_file_name_the_checkout():
    """Modules that find folders from their own file keep finding them after a move.

    A wrong depth fails here; elsewhere it would only skip every test that reads ../shared,
    or let the run-folder guard mistake seqmarl's own checkout for a stranger's folder.
    """
    from seqmarl.run import paths, plugins

    checkout = ROOT.parent
    assert checkout == paths._REPO_ROOT
    assert checkout == plugins.SEQMARL_HOME
    assert (plugins.SEQMARL_HOME / "seqmarl" / "__init__.py").is_file()

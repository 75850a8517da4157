"""Run the test suite against the newest releases of every dependency, outside CI.

    python tools/check_newest.py [--venv DIR] [--keep] [-- PYTEST_ARGS ...]

CI runs on the lock (constraints.txt). This builds a fresh venv with ``seqmarl[dev]`` and no
constraints, so pip takes the newest release of everything except torch, held at the lock's
CPU build (an unpinned torch pulls several GB of CUDA wheels), then runs the suite. Drift is
seen here before users hit it: a new deprecation fails the suite too (pyproject.toml's
``filterwarnings``).

When tests fail, each package whose newest release differs from the lock is tried alone: the
venv goes back to the lock, that one package is raised to its newest release, and the failed
tests run again. The packages under which they fail are named as the ones that broke.
Prints a report; record it in docs/dependencies.md with its date.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from lock import read_pins  # noqa: E402


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """``cmd``, its output captured as text."""
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def pytest_run(py: str, args: list[str]) -> tuple[str, list[str]]:
    """The suite's closing line and the ids of the tests that failed or errored."""
    out = run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *args], cwd=ROOT)
    text = out.stdout + out.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    return (lines[-1].strip("= ") if lines else f"no summary (exit {out.returncode})"), failed


def same(locked: str | None, version: str) -> bool:
    """Whether ``version`` is the locked one (a local tag such as torch's ``+cpu`` aside)."""
    return locked is not None and locked.split("+")[0] == version.split("+")[0]


def main(argv: list[str] | None = None) -> int:
    """Build the venv, run the suite, name what broke."""
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, help="where to build it (default: a temporary folder)")
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    lock = read_pins((ROOT / "constraints.txt").read_text())
    env = args.venv or Path(tempfile.mkdtemp(prefix="seqmarl-newest-")) / "venv"
    venv.create(env, with_pip=True, clear=True)
    py = str(env / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q"]
    start = time.time()
    done = run([*pip, f"torch=={lock['torch']}", "-e", f"{ROOT}[dev]"])
    if done.returncode:
        print(f"install failed:\n{done.stdout}{done.stderr}")
        return 2
    newest = read_pins(run([py, "-m", "pip", "freeze", "--exclude-editable"]).stdout)
    moved = {n: (lock.get(n, "-"), v) for n, v in newest.items() if not same(lock.get(n), v)}
    print(f"newest releases in {env} ({time.time() - start:.0f} s to install)")
    for name, (old, new) in sorted(moved.items()):
        print(f"  {name}: lock {old} -> {new}")
    summary, failed = pytest_run(py, extra)
    print(f"suite on the newest releases: {summary}")
    if not failed:
        return 0
    print(f"{len(failed)} failed: " + ", ".join(failed[:20]) + (" ..." if len(failed) > 20 else ""))
    constraints = ["-c", str(ROOT / "constraints.txt")]
    culprits = []
    for name, (old, new) in sorted(moved.items()):
        if old == "-":
            continue  # not in the lock: nothing to go back to
        back = run([*pip, *constraints, f"torch=={lock['torch']}", "-e", f"{ROOT}[dev]"])
        one = run([*pip, f"{name}=={new}"])
        if back.returncode or one.returncode:
            print(f"  {name} {new}: could not be installed alone beside the lock")
            continue
        alone, still = pytest_run(py, [*failed])
        if still:
            culprits.append(name)
        print(f"  {name} {new} alone: {alone}")
    print("broke it: " + (", ".join(culprits) if culprits else "no single package (a combination)"))
    return 1


if __name__ == "__main__":
    sys.exit(main())

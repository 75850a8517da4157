"""Importing user code: named modules, ``module:attr`` references and entry points.

Every import of code that is not seqmarl's goes through here, so a failure reads the same
everywhere: one line naming the module, whether the module itself was not found or something
inside it failed (with the exception type, message and the line that raised it), or which
attribute is missing and what the module does have.

Three ways to bring user envs in (``docs/environments.md``, "Using your own env from the
command line"):

* ``--import MODULE`` on the command line, or ``imports: [MODULE]`` in a run config;
* an id of the form ``module:TaskClass`` (the module is imported, the attribute used);
* an entry point in the ``seqmarl.envs`` group of an installed distribution, loaded the first
  time an id is not found and when the registered ids are listed.

A run records the file and SHA-256 of every module it imported (``import_files`` in its
``config.yaml``, :func:`import_records`). A run folder's config is read again (``--resume``,
``eval``) under :func:`run_folder`, the one guard every import from a config goes through
(:func:`import_module`): it imports only the modules the command line names with ``--import``
(whether the config names them in ``imports``, in a ``module:attr`` env, sink, scripted player,
algorithm or setting), so a config someone else wrote runs no code by itself; every other module
it names is refused in one line that says which ``--import`` allows it. The folder itself is
never searched (:func:`outside`: a downloaded run cannot bring code in by shipping a ``.py``,
nor shadow a library that is imported later); an allowed module not importable otherwise comes
from its recorded file (unless that file is inside the run folder); a module whose file differs
from the recorded one is imported with a one-line warning.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import importlib
import importlib.metadata
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from seqmarl.errors import SeqmarlError

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "add_cwd_to_path",
    "config_imports",
    "import_module",
    "import_modules",
    "import_records",
    "load_entry_points",
    "outside",
    "resolve",
    "run_folder",
]

#: Entry-point group whose members register envs when imported (or, for ``module:callable``
#: values, when called with no arguments).
ENTRY_POINT_GROUP = "seqmarl.envs"

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_loaded_entry_points: set[tuple[str, str, str]] = set()
#: The ``sys.path`` entry seqmarl itself is imported from (seqmarl/run/plugins.py -> its parent).
SEQMARL_HOME = Path(__file__).resolve().parents[2]

#: While a run folder's config is read: (the run folder, the modules --import names).
_GUARD: contextvars.ContextVar[tuple[Path, frozenset[str]] | None] = contextvars.ContextVar(
    "seqmarl_run_folder", default=None
)

log = logging.getLogger(__name__)


class PluginError(SeqmarlError, ImportError):
    """User code named by the user could not be imported, or lacks the named attribute.

    Attributes:
        missing: The module itself was not found (rather than failing as it ran).
    """

    missing = False


def add_cwd_to_path() -> None:
    """Put the current folder first on ``sys.path``, as ``python -m`` does.

    Console scripts start with the script's folder there instead, so ``my_tasks.py`` next to
    the user would not be importable without this.
    """
    cwd = os.getcwd()
    if not any(p in ("", cwd) for p in sys.path):
        sys.path.insert(0, cwd)


def import_module(name: str, *, origin: str = "", recorded: str | None = None) -> ModuleType:
    """Import ``name``; failures become one-line :class:`PluginError` messages.

    Under :func:`run_folder` (a run folder's config being read) only a module the command line
    names with ``--import`` is imported; any other is refused before it runs.

    Args:
        name: A dotted module name (``my_tasks``, ``pkg.tasks``).
        origin: Where the name came from, prefixed to the message (``"--import"``,
            ``"env 'my_tasks:RhymeTask'"``).
        recorded: The file the run recorded for it (``import_files``), for a refusal's message.

    Raises:
        PluginError: The module is refused (see above), or it (or a parent package) does not
            exist, or importing it raised; the message says which, with the exception type and
            message and the line that raised it.
    """
    guard = _GUARD.get()
    if guard is not None and name not in guard[1]:
        head = f"{origin}: " if origin else ""
        at = f" (recorded at {recorded})" if recorded else ""
        raise PluginError(
            f"{head}{guard[0] / 'config.yaml'} names module {name!r}{at}, and a run folder's "
            f"config runs no code by itself, so it was not imported: review that module, then "
            f"pass --import {name}"
        )
    return _import(name, origin)


def _import(name: str, origin: str = "") -> ModuleType:
    """:func:`import_module` without the run-folder guard (installed entry points)."""
    head = f"{origin}: " if origin else ""
    if not _MODULE.match(name):
        hint = ""
        if name.endswith(".py") or "/" in name or os.sep in name:
            hint = f"; give the module name (e.g. {_module_hint(name)!r}), not a file path"
        raise PluginError(f"{head}{name!r} is not a module name{hint}")
    importlib.invalidate_caches()  # a file written after start-up must still be found
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            fix = "run from the folder that holds it, or add its folder to PYTHONPATH"
            if name.endswith(".py"):
                fix = f"give the module name {_module_hint(name)!r}, not the file name"
            where = f"the current folder ({os.getcwd()}) or on sys.path"
            if _LEFT_OUT:  # a run folder is being read: it is not where code comes from
                where = f"on sys.path (the run folder {_LEFT_OUT[-1].resolve()} is not searched)"
                fix = (
                    "put a reviewed copy outside the run folder, on PYTHONPATH, and pass "
                    f"--import {name}"
                )
            err = PluginError(
                f"{head}could not import module {name!r}: no module named {exc.name!r} in "
                f"{where}; {fix}"
            )
            err.missing = True
            raise err from None
        raise PluginError(f"{head}could not import module {name!r}: {_describe(exc)}") from exc
    except Exception as exc:  # the user's module raised: report it, not a traceback
        raise PluginError(f"{head}could not import module {name!r}: {_describe(exc)}") from exc


def import_modules(
    names: Iterable[str], *, origin: str = "", skip_missing: bool = False
) -> list[ModuleType]:
    """Import each of ``names`` in order (see :func:`import_module`).

    Args:
        names: Dotted module names.
        origin: Where the names came from, prefixed to a message (``"--import"``).
        skip_missing: Leave out a module that is not found (rather than failing in it): a run
            folder's config then imports it from its recorded file (:func:`config_imports`).
    """
    out = []
    for n in names:
        try:
            out.append(import_module(n, origin=origin))
        except PluginError as exc:
            if not (skip_missing and exc.missing):
                raise
    return out


def resolve(ref: str, *, origin: str = "") -> Any:
    """The object a ``"module:attr"`` reference names (``attr`` may be dotted).

    Raises:
        PluginError: ``attr`` is not an attribute name (nothing is imported then), the module
            cannot be imported, or has no such attribute; the message lists the classes and
            functions the module defines.
    """
    return _resolve(ref, origin, import_module)


def _resolve(ref: str, origin: str, importer: Callable[..., ModuleType]) -> Any:
    module_name, _, attr = ref.partition(":")
    if not _MODULE.match(attr):
        head = f"{origin}: " if origin else ""
        raise PluginError(
            f"{head}{ref!r} is not a module:attr reference ({attr!r} is not an attribute name)"
        )
    module = importer(module_name, origin=origin)
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            head = f"{origin}: " if origin else ""
            defined = _defined_in(module)
            has = f"; it defines: {', '.join(defined)}" if defined else ""
            raise PluginError(
                f"{head}module {module_name!r} ({_where(module)}) has no attribute {attr!r}{has}"
            ) from None
    return obj


def load_entry_points(group: str = ENTRY_POINT_GROUP) -> None:
    """Load every entry point of ``group`` once (later calls load only new ones).

    A value ``module`` is imported; a value ``module:callable`` is imported and called with no
    arguments. Either is expected to register envs.

    Raises:
        PluginError: An entry point failed to load or to run; the message names it and its
            distribution.
    """
    for ep in importlib.metadata.entry_points(group=group):
        key = (group, ep.name, ep.value)
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)  # before running it: a plugin may list the registry
        dist = getattr(ep.dist, "name", None) or "?"
        try:
            if ep.attr:  # installed code, not a config's: no run-folder guard
                obj = _resolve(ep.value, "", _import)
                if callable(obj):
                    _call(obj)
            else:
                _import(ep.module)
        except PluginError as exc:
            _loaded_entry_points.discard(key)
            raise PluginError(
                f"entry point {ep.name!r} = {ep.value!r} of distribution {dist!r} "
                f"(group {group}): {exc}"
            ) from None


def config_imports(
    imports: Any,
    env: Any,
    *,
    recorded: Any = None,
    run_dir: str | Path | None = None,
    resolve_env: Callable[[str], Any] | None = None,
    origins: dict[str, str] | None = None,
) -> Any:
    """Import a run config's ``imports`` and the module of a ``module:attr`` env id.

    Called on the raw config before any field is validated, so ids that those modules
    register are known by then.

    Args:
        imports: The config's ``imports`` value (anything that is not a list of strings is
            returned unchanged for the field's own validation to report).
        env: The config's ``task.env`` value.
        recorded: The config's ``import_files`` (module -> ``{"path", "sha256"}``) from
            :func:`import_records`; anything else is ignored.
        run_dir: The run folder being loaded (``--resume``, ``eval``): it is not searched for
            modules, and a module found nowhere else comes from its recorded path.
        resolve_env: Looks a ``module:attr`` env id up (the env registry's ``get``), which
            imports its module; passed in, so this module imports no registry of its own.
        origins: The field that named a module, where it is not ``imports`` itself
            (``{"my_sinks": "train.sinks"}``), for messages.

    Returns:
        The ``imports`` list, with the env's module appended if it was not in it, so the
        saved ``config.yaml`` records everything that was imported.

    Raises:
        PluginError: A module could not be imported.
    """
    if imports is None:
        imports = []
    if not isinstance(imports, list) or not all(isinstance(m, str) for m in imports):
        return imports
    recorded = recorded if isinstance(recorded, dict) else {}
    guard = _GUARD.get()
    with outside(run_dir):
        for name in imports:
            field = (origins or {}).get(name, "config imports")
            _import_run_module(name, recorded.get(name), run_dir, origin=field)
        for name in sorted(guard[1] - set(sys.modules)) if guard else ():
            _import_run_module(name, recorded.get(name), run_dir, origin="--import")
    names = list(imports)
    if isinstance(env, str) and ":" in env and resolve_env is not None:
        with outside(run_dir):
            resolve_env(env)  # imports the module, with the env id in any error
        module = env.partition(":")[0]
        if module not in names:
            names.append(module)
    return names


def import_records(names: Iterable[str]) -> dict[str, dict[str, str]]:
    """The file and SHA-256 of each imported module of ``names`` (those that are files)."""
    records = {}
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path and os.path.isfile(path):
            records[name] = {"path": os.path.abspath(path), "sha256": _sha256(path)}
    return records


def _import_run_module(
    name: str, record: Any, run_dir: str | Path | None, origin: str = "config imports"
) -> ModuleType:
    """Import one of a config's modules; from its recorded file if it is found nowhere else."""
    record = record if isinstance(record, dict) else {}
    want, where = record.get("sha256"), record.get("path")
    try:
        shown = where if isinstance(where, str) else None
        module = import_module(name, origin=origin, recorded=shown)
    except PluginError as exc:
        if not (exc.missing and run_dir is not None and isinstance(where, str)):
            raise
        module = _import_from_record(name, Path(where), Path(run_dir))
    path = getattr(module, "__file__", None)
    if isinstance(want, str) and path and os.path.isfile(path) and _sha256(path) != want:
        log.warning(
            "%s: module %r imported from %s differs from the one the run recorded (%s, "
            "SHA-256 %s..., now %s...): its tasks and rewards may not be those of the run",
            origin,
            name,
            path,
            where,
            want[:12],
            _sha256(path)[:12],
        )
    return module


def _import_from_record(name: str, path: Path, run_dir: Path) -> ModuleType:
    """Import ``name`` from the folder its recorded file ``path`` implies (not the run's own)."""
    head = f"config imports: could not import module {name!r}"
    if _inside(path, run_dir):
        raise PluginError(
            f"{head} except from the run folder itself ({path}); seqmarl does not import code "
            f"that comes with a run folder: review it, then ask for it with --import {name} "
            "from the folder that holds it"
        ) from None
    if not path.is_file():
        raise PluginError(
            f"{head}: no module named {name!r} in the current folder or on sys.path (the run "
            f"folder {run_dir} is not searched), nor at its recorded path {path}; put its "
            f"folder on PYTHONPATH and pass --import {name}"
        ) from None
    depth = name.count(".") + (2 if path.name == "__init__.py" else 1)
    root = path.parents[depth - 1]
    if str(root) not in sys.path:
        sys.path.append(str(root))  # last: it only supplies what is found nowhere else
    return import_module(name, origin=f"config imports (recorded path {path})")


def _inside(path: str | Path, folder: Path) -> bool:
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
    return True


#: The run folders :func:`outside` keeps off ``sys.path`` now (innermost last).
_LEFT_OUT: list[Path] = []


@contextlib.contextmanager
def outside(run_dir: str | Path | None) -> Iterator[None]:
    """Leave ``run_dir`` (and folders inside it) off ``sys.path`` for the duration.

    The command line holds a whole command that loads a run folder (``train --resume``,
    ``eval RUN``) in it, so no ``.py`` shipped in the folder is imported, not even in place
    of a library imported later (``cd RUN && seqmarl eval .``). ``None``: no change.
    """
    if run_dir is None:
        yield
        return
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not _run_folder_path(p or os.getcwd(), Path(run_dir))]
    _LEFT_OUT.append(Path(run_dir))
    try:
        yield
    finally:
        _LEFT_OUT.pop()
        added = [p for p in sys.path if p not in saved]  # e.g. a recorded module's folder
        sys.path[:] = saved + added


def _run_folder_path(entry: str, run_dir: Path) -> bool:
    """Whether ``sys.path`` entry ``entry`` serves code from ``run_dir``.

    The Python environment that runs seqmarl (a virtual environment inside a project folder
    used as a run folder) and the folder seqmarl itself comes from run already: kept.
    """
    if not _inside(entry, run_dir):
        return False
    for env in {sys.prefix, sys.base_prefix}:
        if _inside(entry, Path(env)) and not _inside(run_dir, Path(env)):
            return False
    return Path(entry).resolve() != SEQMARL_HOME


@contextlib.contextmanager
def run_folder(run_dir: str | Path | None, allow: Iterable[str] = ()) -> Iterator[None]:
    """The guard while a run folder's config is read: it imports only the modules ``allow``.

    Every module a config names reaches :func:`import_module` (``imports``, and the module of
    a ``module:attr`` env, sink, scripted player, algorithm or setting); under this guard one
    that the command line did not name (``allow``, the ``--import`` modules) is refused in one
    line naming it and the ``--import`` that allows it, before any of its code runs. The run
    folder is kept off ``sys.path`` (:func:`outside`). ``run_dir`` None: no guard (a config
    the user gives on the command line names its own modules).
    """
    if run_dir is None:
        yield
        return
    token = _GUARD.set((Path(run_dir), frozenset(allow)))
    try:
        with outside(run_dir):
            yield
    finally:
        _GUARD.reset(token)


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _call(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:
        raise PluginError(f"calling it raised {_describe(exc)}") from exc


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py, line N)`` of the frame in user code that raised ``exc``."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f"{os.path.basename(exc.filename)}, line {exc.lineno}"
        return f"{type(exc).__name__}: {exc.msg} ({where})"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    if frames:
        last = frames[-1]
        text += f" ({os.path.basename(last.filename)}, line {last.lineno})"
    return text


def _defined_in(module: ModuleType) -> list[str]:
    """Public classes and functions defined in ``module`` itself (not imported into it)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and callable(obj)
        and getattr(obj, "__module__", None) == module.__name__
    )


def _where(module: ModuleType) -> str:
    path = getattr(module, "__file__", None)
    return os.path.basename(path) if path else "built-in"


def _module_hint(path: str) -> str:
    """``./pkg/tasks.py`` -> ``pkg.tasks``."""
    parts = [p for p in re.split(r"[\\/]", path.removesuffix(".py")) if p not in ("", ".", "..")]
    return ".".join(parts)

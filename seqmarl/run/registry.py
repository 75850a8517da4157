"""One small registry type used for envs, settings and algorithms.

Names are looked up exactly; a name of the form ``"package.module:attribute"`` that is not
registered is imported instead, so user code plugs in without registering anything. A
*namespace* (``"textarena/..."``) resolves every name under its prefix on first use, so a whole
game suite is registered without listing it (:meth:`Registry.add_namespace`). A registry
with an entry-point group also loads the installed plugins of that group the first time a name
is missing and before it lists its names (:mod:`seqmarl.run.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from seqmarl.errors import UnknownNameError
from seqmarl.run import plugins

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with helpful errors.

    Args:
        kind: Singular noun used in error messages (``"env"``, ``"setting"``, ``"algorithm"``).
        entry_point_group: Entry-point group whose plugins register into this registry
            (``"seqmarl.envs"``); None for none.
    """

    def __init__(self, kind: str, *, entry_point_group: str | None = None):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._namespaces: dict[str, tuple[Callable[[str], T], str]] = {}
        self._resolved: dict[str, T] = {}

    @overload
    def register(self, name: str, obj: T, *, overwrite: bool = ...) -> T: ...
    @overload
    def register(self, name: str, *, overwrite: bool = ...) -> Callable[[T], T]: ...

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, return a decorator.

        Raises:
            ValueError: ``name`` is taken and ``overwrite`` is false.
        """

        def add(item: T) -> T:
            if name in self._items and not overwrite:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered; pass overwrite=True to replace it"
                )
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def add_namespace(self, prefix: str, resolve: Callable[[str], T], *, pattern: str) -> None:
        """Resolve every name ``"<prefix>/..."`` with ``resolve(name)`` on first use.

        Args:
            prefix: The namespace, e.g. ``"textarena"``.
            resolve: Builds the entry for a full name; raises
                :class:`~seqmarl.errors.SeqmarlError` (one line) for a name it cannot serve.
            pattern: How names look there, for listings and errors
                (``"textarena/<Game>-v0"``).
        """
        self._namespaces[prefix] = (resolve, pattern)

    @property
    def namespaces(self) -> dict[str, str]:
        """Namespace prefix -> the pattern of its names."""
        return {k: v[1] for k, v in self._namespaces.items()}

    def get(self, name: str) -> T:
        """Return the object registered as ``name`` (or imported from ``"pkg.mod:attr"``).

        Raises:
            UnknownNameError: The name is not registered (nor by an installed plugin); the
                message lists the registered names.
            PluginError: ``"pkg.mod:attr"`` names a module that cannot be imported or lacks the
                attribute; the message says which, with the real error.
        """
        if name in self._items:
            return self._items[name]
        prefix = name.partition("/")[0]
        if "/" in name and prefix in self._namespaces:  # resolved once, never listed
            if name not in self._resolved:
                self._resolved[name] = self._namespaces[prefix][0](name)
            return self._resolved[name]
        if ":" in name:
            return plugins.resolve(name, origin=f"{self.kind} {name!r}")
        self._load_plugins()
        if name in self._items:
            return self._items[name]
        hint = ""
        if self.entry_point_group is not None:
            hint = (
                f"If a module of yours registers this {self.kind}, import it first: --import "
                "MODULE, or `imports: [MODULE]` in the config"
            )
        if self._namespaces:
            suites = ", ".join(p for _, p in self._namespaces.values())
            hint = f"Suites: {suites}" + (f". {hint}" if hint else "")
        raise UnknownNameError(self.kind, name, self._items, hint)

    def names(self) -> list[str]:
        """Registered names (installed plugins' included), sorted."""
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items

    def _load_plugins(self) -> None:
        if self.entry_point_group is not None:
            plugins.load_entry_points(self.entry_point_group)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

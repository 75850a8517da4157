"""One small registry type used for envs, settings and algorithms.

Names are looked up exactly; a name of the form ``"package.module:attribute"`` that is not
registered is imported instead, so user code plugs in without registering anything. A registry
with an entry-point group also loads the installed plugins of that group the first time a name
is missing and before it lists its names (:mod:`seqmarl.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from seqmarl import plugins
from seqmarl.errors import UnknownNameError

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

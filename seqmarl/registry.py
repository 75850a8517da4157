"""One small registry type used for envs, settings and algorithms.

Names are looked up exactly; a name of the form ``"package.module:attribute"`` that is not
registered is imported instead, so user code plugs in without registering anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from seqmarl.errors import UnknownNameError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping with helpful errors.

    Args:
        kind: Singular noun used in error messages (``"env"``, ``"setting"``, ``"algorithm"``).
    """

    def __init__(self, kind: str):
        self.kind = kind
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
            UnknownNameError: The name is neither registered nor importable; the message lists
                the registered names.
        """
        if name in self._items:
            return self._items[name]
        if ":" in name:
            module_name, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise UnknownNameError(self.kind, name, self._items) from exc
        raise UnknownNameError(self.kind, name, self._items)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

"""A small typed registry, one per axis (tasks, methods).

Entries register with a decorator (``@METHODS.register("atp")``) or lazily as ``"module:attr"``
strings, so listing what exists never imports heavy modules. An unknown slug is answered with the
accepted ones and, for a typo, a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a slug (the identity of a method or task) to a class."""

    def __init__(self, axis: str, base: type | None = None) -> None:
        self.axis = axis
        self.base = base
        self._entries: dict[str, type[T] | str] = {}

    def register(self, slug: str) -> Callable[[type[T]], type[T]]:
        """Decorator: ``@REGISTRY.register("slug")`` on a class."""

        def decorate(cls: type[T]) -> type[T]:
            self.add(slug, cls)
            return cls

        return decorate

    def add(self, slug: str, target: type[T] | str) -> None:
        """Register a class, or a lazy ``"package.module:ClassName"`` path."""
        existing = self._entries.get(slug)
        if existing is not None and existing is not target and not isinstance(existing, str):
            if not isinstance(target, type) or target.__qualname__ != existing.__qualname__:
                raise HarnessError(f"{self.axis} slug {slug!r} is registered twice")
        self._entries[slug] = target
        if isinstance(target, type):
            target.slug = slug  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, slug: str) -> bool:
        return slug in self._entries

    def get(self, slug: str) -> type[T]:
        """The class registered under ``slug``; a one-line error names the accepted slugs."""
        if slug not in self._entries:
            raise HarnessError(unknown_choice(self.axis, slug, self.names()))
        target = self._entries[slug]
        if isinstance(target, str):
            target = import_object(target)
            if self.base is not None and not (
                isinstance(target, type) and issubclass(target, self.base)
            ):
                raise HarnessError(
                    f"{self.axis} {slug!r} points to {target!r}, which is not a "
                    f"{self.base.__name__} subclass"
                )
            self._entries[slug] = target
            target.slug = slug  # type: ignore[attr-defined]
        return target  # type: ignore[return-value]


def unknown_choice(axis: str, value: object, accepted: list[str]) -> str:
    """One line: the bad value, a close match if any, and every accepted value."""
    close = difflib.get_close_matches(str(value), accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {axis} {value!r}{hint}; accepted: {', '.join(accepted)}"


def import_object(path: str) -> object:
    """Import ``"package.module:attr"`` (or ``"package.module.attr"``)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise HarnessError(f"import path {path!r} is not of the form 'package.module:attr'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise HarnessError(f"cannot import module {module_name!r} for {path!r}: {err}") from err
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise HarnessError(f"module {module_name!r} has no attribute {attr!r}") from err

"""Read-only mapping views: a config section reads as a dataclass and as a ``Mapping``.

``config.optim.gamma`` and ``config["optim"]["gamma"]`` are the same value, so code written
for the plain-dict configs of earlier versions keeps working. :meth:`Section.to_dict` gives
the plain nested ``dict`` (what checkpoints and ``config.yaml`` store).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from typing import Any, Optional

__all__ = ["FrozenMapping", "Section", "freeze", "thaw"]


class FrozenMapping(Mapping[str, Any]):
    """An immutable ``str``-keyed mapping (a free-form config value such as ``model.options``).

    Nested mappings are frozen too and lists become tuples, so nothing reachable from a
    config can be changed in place.
    """

    __slots__ = ("_items",)
    _items: dict[str, Any]

    def __init__(self, items: Optional[Mapping[str, Any]] = None) -> None:
        object.__setattr__(self, "_items", {str(k): freeze(v) for k, v in dict(items or {}).items()})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMapping, (thaw(self),))

    def __eq__(self, other: object) -> bool:
        return _plain_equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrozenMapping({thaw(self)!r})"


def freeze(value: Any) -> Any:
    """``value`` with every mapping made a :class:`FrozenMapping` and every list a tuple."""
    if isinstance(value, Section):
        return value
    if isinstance(value, Mapping):
        return value if isinstance(value, FrozenMapping) else FrozenMapping(value)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain-Python copy of ``value``: mappings → ``dict``, tuples → ``list``."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


class Section(Mapping[str, Any]):
    """Base of the config dataclasses: a read-only ``Mapping`` over the dataclass fields.

    Equality is mapping equality, so a section equals the plain dict of the same values
    (``load_config(...) == checkpoint["config"]`` compares values, not types).
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if key not in _names(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_names(type(self)))

    def __len__(self) -> int:
        return len(_names(type(self)))

    def __eq__(self, other: object) -> bool:
        return _plain_equal(self, other)

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A new plain nested ``dict`` of the values (safe to change, YAML- and torch-safe)."""
        return thaw(self)


def _plain_equal(mine: Mapping[str, Any], other: object) -> Any:
    """Equality of the plain values (a tuple equals the list of the same items)."""
    if not isinstance(other, Mapping):
        return NotImplemented
    return thaw(mine) == thaw(other)


@functools.cache
def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))

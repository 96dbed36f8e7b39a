"""Values of config fields checked and converted against the fields' type annotations.

Field types used by the config dataclasses: ``bool``, ``int``, ``float``, ``str``,
``Literal[...]`` (a choice of words), ``Mapping[str, Any]`` (a free-form mapping) and
``Optional[...]`` of any of these (``null`` allowed).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from oltr.errors import OLTRError

__all__ = ["ConfigError", "coerce", "conforms", "describe_type", "is_finite_number", "parse_override",
           "parse_value", "split_optional"]

_NULL_WORDS = ("null", "none", "~")


class ConfigError(OLTRError, ValueError):
    """A config file, a ``--set`` override or a stored config is malformed: unknown key, wrong
    type or value out of range. The message names the key and where it was set."""


def split_optional(tp: Any) -> tuple[bool, Any]:
    """``(nullable, inner type)`` of ``Optional[X]`` → ``(True, X)``; of ``X`` → ``(False, X)``."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _is_mapping(tp: Any) -> bool:
    return tp is Mapping or get_origin(tp) is Mapping


def _expected(inner: Any) -> str:
    if get_origin(inner) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(inner))
    if _is_mapping(inner):
        return "a mapping"
    return {bool: "true or false (bool)", int: "an integer (int)", float: "a number (float)",
            str: "a string (str)"}[inner]


def describe_type(tp: Any, path: bool = False) -> str:
    """Short human name of a field type: ``int``, ``float or null``, ``plain | oltr``, ``path``."""
    nullable, inner = split_optional(tp)
    if get_origin(inner) is Literal:
        name = " | ".join(str(a) for a in get_args(inner))
    elif _is_mapping(inner):
        name = "mapping"
    elif inner is str and path:
        name = "path"
    else:
        name = inner.__name__
    return f"{name} or null" if nullable else name


def conforms(value: Any, tp: Any) -> bool:
    """Whether ``value`` already has the type ``tp`` (an ``int`` counts as a ``float``)."""
    nullable, inner = split_optional(tp)
    if value is None:
        return nullable
    if get_origin(inner) is Literal:
        return isinstance(value, str) and value in get_args(inner)
    if _is_mapping(inner):
        return isinstance(value, Mapping)
    if inner is bool:
        return isinstance(value, bool)
    if inner is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if inner is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, inner)


def coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """``value`` checked against the field type ``tp`` and converted where unambiguous.

    An integer becomes a float for a float field, a number written as text (YAML 1.1 reads
    ``5e-4`` as a string) becomes a float, a number becomes a string for a string field.

    Raises:
        ConfigError: ``"<source>: config key '<key>' must be <expected type>; got <value>"``.
    """
    nullable, inner = split_optional(tp)
    if value is None:
        if nullable:
            return None
        raise ConfigError(f"{source}: config key {key!r} must be {_expected(inner)}; got null")
    if inner is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if inner is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if conforms(value, inner):
        return float(value) if inner is float else value
    suffix = " or null" if nullable else ""
    raise ConfigError(f"{source}: config key {key!r} must be {_expected(inner)}{suffix}; got {value!r}")


def parse_value(text: str) -> Any:
    """Typed value of an override's right-hand side when the field's type does not decide it.

    ``"3"`` → 3, ``"0.1"``/``"5e-4"`` → float, ``"true"``/``"false"`` → bool,
    ``"null"``/``"none"`` → None, ``"[1, 2]"`` → list, anything else → the string.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in _NULL_WORDS:
        return None
    for cast in (int, float):
        try:
            return cast(stripped)
        except ValueError:
            pass
    if stripped[:1] in "[{":
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            pass
    return stripped


def parse_override(text: str, tp: Any) -> Any:
    """The value of ``--set key=text`` for a field of type ``tp`` (before :func:`coerce`).

    A string or choice field takes the text as written (``data.transform=none`` is the word
    ``none``; ``name=123`` the name ``"123"``), except ``null``/``none`` where the field may be
    null; other fields parse it with :func:`parse_value`.
    """
    nullable, inner = split_optional(tp)
    stripped = text.strip()
    if nullable and stripped.lower() in _NULL_WORDS:
        return None
    if inner is str or get_origin(inner) is Literal:
        return stripped
    return parse_value(stripped)


def is_finite_number(value: Any) -> bool:
    """``value`` is an int, or a float that is neither NaN nor infinite."""
    return not isinstance(value, float) or math.isfinite(value)


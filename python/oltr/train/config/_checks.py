"""Checks of a complete config: field types, finite numbers, ranges, and relations between keys.

Every error names the key and where its value came from (a file, ``--set``, a checkpoint,
or ``default``), which the loader passes in through :data:`ORIGINS` while it builds the config.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Optional

from oltr.train.config._values import (
    ConfigError,
    conforms,
    describe_type,
    is_finite_number,
)

__all__ = ["CLASSIFIER_STAGES", "ORIGINS", "check_config", "origins_in_scope"]

#: Stages that train only a classifier on a frozen stage-1 backbone (Kang et al., ICLR 2020).
CLASSIFIER_STAGES = ("crt", "lws")

#: ``{dotted key: where its value was set}`` of the config being built (empty: unknown).
ORIGINS: ContextVar[Optional[Mapping[str, str]]] = ContextVar("oltr_config_origins", default=None)


@contextlib.contextmanager
def origins_in_scope(origins: Mapping[str, str]) -> Iterator[None]:
    """Name ``origins`` in the errors of configs constructed inside the ``with`` block."""
    token = ORIGINS.set(origins)
    try:
        yield
    finally:
        ORIGINS.reset(token)


def _fail(key: str, message: str) -> ConfigError:
    origin = (ORIGINS.get() or {}).get(key, "config")
    return ConfigError(f"{origin}: config key {key!r} {message}")


def _check_section(section: Any, prefix: str) -> None:
    from oltr.train.config._schema import field_types, is_section_type

    cls: type = type(section)
    types = field_types(cls)
    for f in dataclasses.fields(section):
        key, value, tp = f"{prefix}{f.name}", getattr(section, f.name), types[f.name]
        if is_section_type(tp):
            if not isinstance(value, tp):
                raise _fail(key, f"must be a mapping (the {f.name} section); got {value!r}")
            _check_section(value, f"{key}.")
            continue
        if not conforms(value, tp):
            raise _fail(key, f"must be {describe_type(tp)}; got {value!r}")
        if value is None or isinstance(value, (bool, str, Mapping)):
            continue
        interval = f.metadata.get("check")
        if not is_finite_number(value) or (interval is not None and not interval.contains(value)):
            allowed = "a finite number" if interval is None else interval.describe()  # NaN, inf: outside
            raise _fail(key, f"must be {allowed}; got {value!r}")


def check_config(config: Any) -> None:
    """Check every field of a :class:`~oltr.train.config.Config` and the relations between them.

    Raises:
        ConfigError: ``"<origin>: config key '<key>' must be <what>; got <value>"``.
    """
    _check_section(config, "")
    if config.stage in CLASSIFIER_STAGES and not config.model.init:
        raise _fail("model.init", f"must name the stage-1 best.pt for stage {config.stage!r} (its backbone is "
                                  "frozen and its classifier re-trained); got null")
    if config.eval.few_shot >= config.eval.many_shot:
        raise _fail("eval.few_shot", f"must be below eval.many_shot ({config.eval.many_shot}); "
                                     f"got {config.eval.few_shot!r}")

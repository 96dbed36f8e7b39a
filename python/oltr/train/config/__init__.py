"""Training configs: typed, frozen dataclasses behind the YAML recipes.

* :func:`load_config` ``(name_or_path, overrides)`` → :class:`Config`: a YAML file or a shipped
  recipe's name (:func:`shipped_configs`), its ``base:`` chain, then ``"a.b=value"`` overrides.
  Unknown keys, wrong types and out-of-range values are :class:`ConfigError` naming the key and
  the file (or ``--set``).
* Inheritance: a file may start with ``base: fashion_lt_stage1`` (a shipped name, or a path
  relative to the file) and state only what differs; sections merge key by key.
* Paths: a relative path in a config file is relative to that file's folder; in a shipped recipe,
  a default or ``--set``, to the current directory. A loaded config holds absolute paths.
* A :class:`Config` is also a read-only ``Mapping`` (``config["optim"]["gamma"] ==
  config.optim.gamma``); :meth:`Config.to_dict` is the plain dict checkpoints store, and
  :func:`stored_config` re-validates one when a checkpoint is loaded.
* The centroids' StepLR follows ``optim.step_size`` / ``optim.gamma`` unless
  ``centroids.step_size`` / ``centroids.gamma`` are set (:attr:`Config.centroid_schedule`).

Every key, its type, default and meaning: ``docs/config-reference.md``, generated from the
dataclasses by ``scripts/config_reference.py`` (:func:`oltr.train.config.reference.markdown`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oltr.train.config._load import (
    BASE_KEY,
    apply_overrides,
    config_dir,
    config_from_dict,
    load_config,
    merge_config,
    shipped_configs,
    stored_config,
)
from oltr.train.config._schema import (
    CentroidsConfig,
    Config,
    DataConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SamplerConfig,
    resource_limit,
)
from oltr.train.config._values import ConfigError, parse_value
from oltr.train.config._view import FrozenMapping, Section

__all__ = [
    "BASE_KEY",
    "DEFAULTS",
    "CentroidsConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "FrozenMapping",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SamplerConfig",
    "Section",
    "apply_overrides",
    "as_config",
    "config_dir",
    "config_from_dict",
    "load_config",
    "merge_config",
    "parse_value",
    "resource_limit",
    "shipped_configs",
    "stored_config",
    "validate_config",
]

#: Every key a config may hold with its default, as a plain nested dict (a copy of the
#: dataclass defaults: changing it changes nothing).
DEFAULTS: dict[str, Any] = Config().to_dict()


def as_config(config: Mapping[str, Any]) -> Config:
    """``config`` itself if it is a :class:`Config`, else the validated :class:`Config` of a
    plain nested dict (:func:`config_from_dict`)."""
    return config_from_dict(config)


def validate_config(config: Mapping[str, Any]) -> Config:
    """The validated :class:`Config` of ``config``; raises :class:`ConfigError` naming the key."""
    return config_from_dict(config)

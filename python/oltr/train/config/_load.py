"""Building a :class:`Config`: YAML files, ``base:`` inheritance, ``--set`` overrides, paths.

A config is built from layers, later ones winning key by key (a deep merge): the dataclass
defaults, then the chain of ``base:`` files (the farthest ancestor first), then the named file,
then each ``--set`` override in order. Each layer's values are type-checked as it is read, so an
error names the file (or ``--set``) that wrote the bad value; the complete config is then
range-checked (:mod:`oltr.train.config._checks`).

Paths (the fields marked ``path``): ``~`` is expanded; a relative path in a user's config file
is resolved against that file's folder; a relative path in a shipped config, in ``--set`` or in a
default is resolved against the current directory (shipped recipes are written, like the official
code, for the folder you run in: ``./data/ImageNet_LT/...``, ``runs/...``). A loaded config holds
absolute paths (or ``""`` / ``null`` for unset ones).
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional, cast

import yaml

from oltr.train.config._checks import origins_in_scope
from oltr.train.config._schema import (
    Config,
    field_types,
    is_section_type,
    resource_limit,
)
from oltr.train.config._values import ConfigError, coerce, parse_override, parse_value
from oltr.train.config._view import FrozenMapping, thaw

__all__ = [
    "BASE_KEY",
    "apply_overrides",
    "config_dir",
    "config_from_dict",
    "load_config",
    "merge_config",
    "shipped_configs",
    "stored_config",
]

#: Top-level key of a config file naming the config it inherits from (a shipped name or a path).
BASE_KEY = "base"

_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

#: ``(values, origins)``: the nested values a layer states and ``{dotted key: source}``.
_Layer = tuple[dict[str, Any], dict[str, str]]


def config_dir() -> Path:
    """Folder holding the shipped YAML configs."""
    return _CONFIG_DIR


def shipped_configs() -> list[str]:
    """Names (without ``.yaml``) of the configs shipped in the package, sorted."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.yaml"))


def _find(name_or_path: str | Path, folder: Optional[Path]) -> Path:
    """A config file: a path (relative to ``folder``, else the current directory) or the
    name of a shipped config (``fashion_lt_stage1`` or ``fashion_lt_stage1.yaml``)."""
    given = Path(os.path.expanduser(str(name_or_path)))
    path = given if folder is None or given.is_absolute() else folder / given
    if path.is_file():
        return path
    if len(given.parts) == 1 and given.suffix in ("", ".yaml"):
        shipped = _CONFIG_DIR / f"{given.stem}.yaml"
        if shipped.is_file():
            return shipped
    where = f" (relative to {str(folder)!r})" if folder is not None else ""
    raise ConfigError(f"config file not found: {str(name_or_path)!r}{where} "
                      f"(shipped configs: {', '.join(shipped_configs()) or 'none'})")


def _is_shipped(path: Path) -> bool:
    return path.resolve().parent == _CONFIG_DIR


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    return raw


def _layer(raw: Mapping[Any, Any], source: str, folder: Optional[Path], cls: type = Config,
           prefix: str = "") -> _Layer:
    """The typed values ``raw`` states for section ``cls``; relative paths joined to ``folder``."""
    types = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in types:
            raise ConfigError(f"{source}: unknown config key {dotted!r} "
                              f"(known: {', '.join(sorted(types))})")
        tp = types[key]
        if is_section_type(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: config key {dotted!r} must be a mapping "
                                  f"(the {key} section); got {value!r}")
            values[key], inner = _layer(value, source, folder, tp, f"{dotted}.")
            origins.update(inner)
            continue
        value = coerce(value, tp, dotted, source)
        if fields[key].metadata.get("path") and value:
            value = _join(value, folder)
        values[key] = thaw(value) if isinstance(value, Mapping) else value
        origins[dotted] = source
    return values, origins


def _join(path: str, folder: Optional[Path]) -> str:
    """``path`` with ``~`` expanded, joined to ``folder`` if relative (``folder=None``: as is)."""
    expanded = os.path.expanduser(path)
    if folder is None or os.path.isabs(expanded):
        return expanded
    return os.path.normpath(os.path.join(folder, expanded))


def _merge(base: _Layer, top: _Layer) -> _Layer:
    return _deep_merge(base[0], top[0]), {**base[1], **top[1]}


def _deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _file_layer(path: Path, chain: tuple[Path, ...] = ()) -> _Layer:
    """The layer of a config file merged over the layers of its ``base:`` chain."""
    here = path.resolve()
    if here in chain:
        cycle = " -> ".join(str(p) for p in (*chain, here))
        raise ConfigError(f"config inheritance cycle: {cycle}")
    raw = _read_yaml(path)
    base = raw.pop(BASE_KEY, None)
    own = _layer(raw, str(path), None if _is_shipped(path) else path.parent.absolute())
    if base is None:
        return own
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path!s}: config key {BASE_KEY!r} must name a config "
                          f"(a shipped name or a path); got {base!r}")
    parent = _find(base.strip(), path.parent)
    return _merge(_file_layer(parent, (*chain, here)), own)


def _override_layer(item: str) -> _Layer:
    """The layer of one ``"dotted.key=value"`` override (the value typed by the key's field)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    dotted, _, text = item.partition("=")
    keys = dotted.strip().split(".")
    if not dotted.strip() or any(not k for k in keys):
        raise ConfigError(f"--set expects key=value, got {item!r}")
    tp: Any = Config
    for key in keys:
        if not is_section_type(tp):  # inside a free mapping (model.options.x) or below a leaf
            tp = None
            break
        tp = field_types(tp).get(key)  # None: an unknown key, reported by _layer
    value = parse_value(text) if tp is None or is_section_type(tp) else parse_override(text, tp)
    raw: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        raw = {key: raw}
    return _layer(raw, "--set", None)


def _build(layer: _Layer) -> Config:
    """The validated :class:`Config` of a merged layer (unset keys: the defaults)."""
    values, origins = layer
    everywhere = {key: "default" for key in _leaf_keys(Config)}
    everywhere.update(origins)
    with origins_in_scope(everywhere):
        config = _construct(Config, values)
    object.__setattr__(config, "_origins", everywhere)
    return config


def _construct(cls: type, values: Mapping[str, Any]) -> Any:
    types = field_types(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if is_section_type(types[f.name]):
            kwargs[f.name] = _construct(types[f.name], values.get(f.name, {}))
            continue
        if f.name in values:
            value = values[f.name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        else:
            value = cast(Callable[[], Any], f.default_factory)()
        if isinstance(value, Mapping):
            value = FrozenMapping(value)
        elif f.metadata.get("path") and isinstance(value, str) and value:
            value = _join(value, Path.cwd())
        kwargs[f.name] = value
    return cls(**kwargs)


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for name, tp in field_types(cls).items():
        keys.extend(_leaf_keys(tp, f"{prefix}{name}.") if is_section_type(tp) else [f"{prefix}{name}"])
    return keys


def load_config(path_or_name: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config (and its ``base:`` chain), fill in the defaults, apply overrides.

    Args:
        path_or_name: a YAML file, or the name of a shipped config (:func:`shipped_configs`).
        overrides: ``"a.b=value"`` strings, applied in order; each value is parsed and checked
            as the key's field type; a relative path is relative to the current directory.

    Returns:
        The complete, validated, frozen :class:`Config` (also a read-only ``Mapping``).

    Raises:
        ConfigError: missing file, invalid YAML, unknown key, wrong type, value out of range or
            an inheritance cycle; the message names the key and the file (or ``--set``).
    """
    layer = _file_layer(_find(path_or_name, None))
    for item in overrides:
        layer = _merge(layer, _override_layer(item))
    return _build(layer)


def _origins_of(config: Mapping[str, Any], source: str) -> _Layer:
    origins = getattr(config, "_origins", None)
    values, stated = _layer(thaw(config), source, None)
    return values, dict(origins) if origins is not None else stated


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> Config:
    """``config`` (a :class:`Config` or a plain nested dict) with ``"dotted.key=value"``
    overrides applied, as a new validated :class:`Config` (``config`` is not changed).

    Raises:
        ConfigError: an override without ``=``, an unknown key, a wrong type or a bad value.
    """
    layer = _origins_of(config, "config")
    for item in overrides:
        layer = _merge(layer, _override_layer(item))
    return _build(layer)


def config_from_dict(config: Mapping[str, Any], source: str = "config") -> Config:
    """A validated :class:`Config` from a plain nested dict (keys absent → defaults).

    Raises:
        ConfigError: unknown key, wrong type or bad value, naming the key and ``source``.
    """
    if isinstance(config, Config):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: a config must be a mapping, got {type(config).__name__}")
    return _build(_layer(config, source, None))


def merge_config(base: Mapping[str, Any], update: Mapping[str, Any], source: str = "config") -> Config:
    """``base`` deep-updated by ``update`` (every key of ``update`` must exist), validated."""
    return _build(_merge(_origins_of(base, "config"), _layer(update, source, None)))


_RESOURCE_KEYS = ("num_workers", "threads")


def stored_config(config: Mapping[str, Any], source: str) -> Config:
    """A checkpoint's stored config, re-validated on this machine.

    Everything is checked as in :func:`config_from_dict`. Resource settings
    (``num_workers``, ``threads``) are this machine's business, not the model's: one above this
    machine's bound (:func:`resource_limit`) is lowered to it with a warning, so a model
    trained on a larger machine still loads and no stored value can start unbounded workers.

    Raises:
        ConfigError: naming the key and ``source`` (the checkpoint file).
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: the stored config must be a mapping, got {type(config).__name__}")
    values = thaw(config)
    limit = resource_limit()
    for key in _RESOURCE_KEYS:
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            warnings.warn(f"{source}: config key {key!r} is {value}, above this machine's bound "
                          f"{limit} (max(8, 2 x CPU count)); using {limit}", UserWarning, stacklevel=2)
            values[key] = limit
    return config_from_dict(values, source)

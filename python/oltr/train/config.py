"""Training configs: YAML files checked against a schema of defaults, ``--set`` overrides.

A config is a nested ``dict``. Every key a config may hold appears in :data:`DEFAULTS`
(the official ImageNet-LT stage-1 values where the official code has one, OLTR.md §5), so a
misspelt key in a YAML file or in ``--set`` is an error, not a silently ignored setting.

Shipped configs live in ``oltr/configs/*.yaml`` (package data) and can be named without
the path or the ``.yaml`` suffix: ``load_config("demo_fashion_stage1")``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from oltr.errors import OLTRError

__all__ = [
    "ConfigError",
    "DEFAULTS",
    "apply_overrides",
    "config_dir",
    "load_config",
    "merge_config",
    "parse_value",
    "shipped_configs",
    "validate_config",
]


class ConfigError(OLTRError, ValueError):
    """A config file or a ``--set`` override is malformed or names an unknown key."""


#: Every key a training config may hold, with its default value. ``None`` means "no default,
#: any type". Values are the official ImageNet-LT stage-1 recipe where one exists (OLTR.md §5).
DEFAULTS: dict[str, Any] = {
    "name": "run",
    "stage": "plain",             # plain (stage 1) | oltr (stage 2)
    "seed": 0,
    "device": "auto",             # auto | cpu | cuda
    "out_dir": "runs/run",
    "epochs": 30,
    "batch_size": 128,            # global batch (split across ranks under torch.distributed)
    "num_workers": 0,
    "threads": None,              # torch CPU threads (torch.set_num_threads); None = torch's default
    "steps_per_epoch": None,      # None -> int(len(train) / batch_size), as the official code
    "progress": True,
    "data": {
        "source": "lists",        # lists | fashion_lt | digits_lt
        "root": "",               # image root joined with the list paths
        "open_root": "",          # root of the open-set images (official: ./data/<ds>/<ds>_open)
        "train_list": "",
        "val_list": "",
        "test_list": "",
        "open_list": "",
        "transform": "imagenet",  # imagenet (official) | none (arrays as they are)
        "image_size": 224,
        "resize": 256,
        "skip_missing": False,
        "seed": 0,                # seed of an embedded dataset's split
    },
    "model": {
        "backbone": "resnet10",
        "num_classes": 1000,
        "feat_dim": None,         # None -> the backbone's default (512 for the ResNets)
        "use_modulatedatt": None,  # None -> the stage's official default (oltr.model.stage_defaults)
        "use_fc": None,
        "init": None,             # stage 1: pretrained backbone file; stage 2: stage-1 checkpoint
        "fix_backbone": False,    # official `fix`: train only modulatedatt and fc_add
        "options": {},            # extra keyword arguments of oltr.model.create_model
    },
    "sampler": {
        "kind": "shuffle",        # shuffle | class_aware
        "samples_per_class": 4,
    },
    "optim": {
        "feat_lr": 0.1,
        "classifier_lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "step_size": 10,
        "gamma": 0.1,
    },
    "centroids": {                # stage 2: the memory and its own SGD optimiser
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.0005,
        "step_size": 10,
        "gamma": 0.1,
        "gradient": "official",   # official (custom backward) | autograd
        "repel_margin": 10.0,     # DiscCentroidsLoss hinge margin (official 10.0)
        "repel_weight": 0.01,     # weight of the repel term inside the loss (official 0.01)
    },
    "loss": {
        "ce_weight": 1.0,
        "centroid_weight": 0.01,
    },
    "eval": {
        "open_threshold": 0.1,    # official fixed threshold on the max softmax probability
        "val_keep": 0.95,         # validation-chosen threshold keeps this fraction of known val
        "many_shot": 100,
        "few_shot": 20,
        "paper_groups": False,    # True: >100 / <20 (paper) instead of >=100 / <=20 (code)
        "batch_size": 256,
    },
}

_CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def config_dir() -> Path:
    """Folder holding the shipped YAML configs."""
    return _CONFIG_DIR


def shipped_configs() -> list[str]:
    """Names (without ``.yaml``) of the configs shipped in the package, sorted."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.yaml"))


def _resolve(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.is_file():
        return path
    shipped = _CONFIG_DIR / f"{path.name}.yaml" if path.suffix == "" else _CONFIG_DIR / path.name
    if len(path.parts) == 1 and shipped.is_file():
        return shipped
    raise ConfigError(
        f"config file not found: {str(path_or_name)!r} "
        f"(shipped configs: {', '.join(shipped_configs()) or 'none'})"
    )


def load_config(
    path_or_name: str | Path, overrides: Iterable[str] = ()
) -> dict[str, Any]:
    """Read a YAML config, fill in :data:`DEFAULTS`, apply ``key=value`` overrides.

    Args:
        path_or_name: a YAML file, or the name of a shipped config.
        overrides: ``"a.b=value"`` strings, applied in order (see :func:`apply_overrides`).

    Returns:
        The complete, validated config (a new nested dict).

    Raises:
        ConfigError: missing file, invalid YAML, unknown key, wrong type or bad value.
    """
    path = _resolve(path_or_name)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {str(path)!r} must hold a mapping, got {type(raw).__name__}")
    config = merge_config(DEFAULTS, raw, source=str(path))
    config = apply_overrides(config, overrides)
    return config


def merge_config(
    base: Mapping[str, Any], update: Mapping[str, Any], source: str = "config"
) -> dict[str, Any]:
    """``base`` updated recursively by ``update``; every key of ``update`` must exist in ``base``."""
    out = copy.deepcopy(dict(base))
    _merge_into(out, update, prefix="", source=source, schema=DEFAULTS)
    validate_config(out)
    return out


def _merge_into(
    out: dict[str, Any], update: Mapping[str, Any], prefix: str, source: str,
    schema: Mapping[str, Any],
) -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(
                f"{source}: unknown config key {dotted!r} "
                f"(known: {', '.join(sorted(str(k) for k in schema))})"
            )
        default = schema[key]
        if isinstance(default, dict) and default:  # a section (an empty dict is a free mapping)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted!r} must be a mapping, got {value!r}")
            _merge_into(out[key], value, f"{dotted}.", source, default)
        else:
            out[key] = _coerce(value, default, dotted, source)


def _coerce(value: Any, default: Any, dotted: str, source: str) -> Any:
    """``value`` converted to the type of ``default`` where that is unambiguous."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {dotted!r} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {dotted!r} must be an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "5e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{source}: {dotted!r} must be a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {dotted!r} must be a string, got {value!r}")
    if isinstance(default, dict):
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{source}: {dotted!r} must be a mapping, got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """Typed value of an override's right-hand side.

    ``"3"`` → 3, ``"0.1"``/``"5e-4"`` → float, ``"true"``/``"false"`` → bool,
    ``"null"``/``"none"`` → None, ``"[1, 2]"`` → list, anything else → the string.
    """
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "none", "~"):
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


def apply_overrides(config: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``config`` with each ``"dotted.key=value"`` override applied (value typed by :func:`parse_value`).

    Raises:
        ConfigError: an override without ``=``, an unknown key, or a value of the wrong type.
    """
    out = copy.deepcopy(dict(config))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        dotted, _, text = item.partition("=")
        dotted = dotted.strip()
        keys = dotted.split(".")
        if not dotted or any(not k for k in keys):
            raise ConfigError(f"--set expects key=value, got {item!r}")
        update: dict[str, Any] = {}
        node = update
        for key in keys[:-1]:
            node[key] = {}
            node = node[key]
        value = parse_value(text)
        if value is None and isinstance(_schema_default(keys), str):
            value = text.strip()  # a string key: "none" is the word (e.g. data.transform=none)
        node[keys[-1]] = value
        _merge_into(out, update, prefix="", source="--set", schema=DEFAULTS)
    validate_config(out)
    return out


_CHOICES = {
    ("stage",): ("plain", "oltr"),
    ("device",): ("auto", "cpu", "cuda"),
    ("data", "source"): ("lists", "fashion_lt", "digits_lt"),
    ("data", "transform"): ("imagenet", "none"),
    ("sampler", "kind"): ("shuffle", "class_aware"),
    ("centroids", "gradient"): ("official", "autograd"),
}
_POSITIVE = [
    ("epochs",), ("batch_size",), ("model", "num_classes"),
    ("sampler", "samples_per_class"), ("optim", "step_size"), ("centroids", "step_size"),
    ("eval", "batch_size"),
]


def validate_config(config: Mapping[str, Any]) -> None:
    """Check choices and ranges of a complete config.

    Raises:
        ConfigError: naming the key and what was wrong.
    """
    for path, choices in _CHOICES.items():
        value = _get(config, path)
        if value not in choices:
            raise ConfigError(
                f"config key {'.'.join(path)!r} must be one of {', '.join(choices)}; got {value!r}"
            )
    for path in _POSITIVE:
        value = _get(config, path)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"config key {'.'.join(path)!r} must be a positive integer; got {value!r}")
    feat_dim = config["model"]["feat_dim"]
    if feat_dim is not None and (not isinstance(feat_dim, int) or isinstance(feat_dim, bool) or feat_dim < 1):
        raise ConfigError(f"config key 'model.feat_dim' must be null or a positive integer; got {feat_dim!r}")
    for key in ("use_modulatedatt", "use_fc"):
        if config["model"][key] not in (None, True, False):
            raise ConfigError(f"config key 'model.{key}' must be null, true or false; got {config['model'][key]!r}")
    if config["num_workers"] < 0:
        raise ConfigError(f"config key 'num_workers' must be >= 0; got {config['num_workers']!r}")
    threads = config["threads"]
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"config key 'threads' must be null or a positive integer; got {threads!r}")
    spe = config["steps_per_epoch"]
    if spe is not None and (not isinstance(spe, int) or isinstance(spe, bool) or spe < 1):
        raise ConfigError(f"config key 'steps_per_epoch' must be null or a positive integer; got {spe!r}")
    keep = config["eval"]["val_keep"]
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"config key 'eval.val_keep' must be in (0, 1]; got {keep!r}")
    for lr_path in (("optim", "feat_lr"), ("optim", "classifier_lr"), ("centroids", "lr")):
        if _get(config, lr_path) < 0:
            raise ConfigError(f"config key {'.'.join(lr_path)!r} must be >= 0; got {_get(config, lr_path)!r}")


def _schema_default(keys: list[str]) -> Any:
    """The default of a dotted key, or None for a key outside the schema."""
    node: Any = DEFAULTS
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _get(config: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = config
    for key in path:
        node = node[key]
    return node

"""The ``oltr compare`` config: which data set (through its training recipes), seeds, methods
and detectors. A YAML file (or a shipped one's name, e.g. ``compare_digits_lt``)::

    name: digits_lt                 # the table's title
    recipes:                        # training configs (shipped names or paths relative to this file)
      stage1: digits_lt_stage1      # plain model (shared stage 1 of the post-hoc methods, cRT, LWS)
      oltr: digits_lt_stage2        # OLTR from that stage 1
      crt: digits_lt_crt            # classifier re-training on that stage 1
      lws: digits_lt_lws            # learnable weight scaling on that stage 1
    seeds: [0, 1, 2]
    methods: [plain, plain_equal_epochs, plain_la, tau_norm, ncm, crt, lws, balanced_softmax, oltr, oltr_la]
    detectors: [msp, max_logit, energy, reachability, knn, mahalanobis]
    knn_k: 50                       # k of the KNN detector
    vim_dim: null                   # ViM's principal dimensions (null: D / 2)
    quick_epochs: 2                 # epochs of every training in --quick mode
    device: cpu

Every key is optional except ``recipes.stage1``; a method whose recipe is missing is an error
naming the key.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from oltr.train.config import ConfigError

__all__ = ["DETECTORS", "METHODS", "CompareSpec", "load_compare_spec", "shipped_compare_configs"]

#: method key -> (table label, recipes it needs)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "plain": ("plain", ("stage1",)),
    "plain_equal_epochs": ("plain (equal epochs)", ("stage1", "oltr")),
    "plain_la": ("plain + logit adj.", ("stage1",)),
    "tau_norm": ("τ-norm", ("stage1",)),
    "ncm": ("NCM", ("stage1",)),
    "crt": ("cRT", ("stage1", "crt")),
    "lws": ("LWS", ("stage1", "lws")),
    "balanced_softmax": ("Balanced Softmax", ("stage1",)),
    "oltr": ("OLTR", ("stage1", "oltr")),
    "oltr_la": ("OLTR + logit adj.", ("stage1", "oltr")),
}

#: detector key -> table label (every score: larger = more unknown)
DETECTORS: dict[str, str] = {
    "msp": "MSP", "max_logit": "MaxLogit", "energy": "energy", "reachability": "reachability",
    "knn": "KNN", "mahalanobis": "Mahalanobis", "rmd": "RMD", "vim": "ViM", "react": "ReAct",
}

_RECIPES = ("stage1", "oltr", "crt", "lws")
_KEYS = ("name", "recipes", "seeds", "methods", "detectors", "knn_k", "vim_dim", "quick_epochs", "device")
_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "compare"


@dataclass(frozen=True)
class CompareSpec:
    """A validated compare config (see the module docstring); recipe paths are absolute or
    shipped names."""

    name: str
    recipes: Mapping[str, str]
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = tuple(METHODS)
    detectors: tuple[str, ...] = ("msp", "max_logit", "energy", "reachability", "knn", "mahalanobis")
    knn_k: int = 50
    vim_dim: Optional[int] = None
    quick_epochs: int = 2
    device: str = "cpu"
    source: str = field(default="", compare=False)


def shipped_compare_configs() -> list[str]:
    """Names of the shipped compare configs (``compare_*.yaml``)."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("compare_*.yaml"))


def _fail(source: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: compare key {key!r} {message}")


def _names(raw: Any, source: str, key: str, known: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(raw, (list, tuple)) or not raw or not all(isinstance(x, str) for x in raw):
        raise _fail(source, key, f"must be a non-empty list of names; got {raw!r}")
    unknown = [x for x in raw if x not in known]
    if unknown:
        raise _fail(source, key, f"names unknown {unknown} (known: {', '.join(known)})")
    if len(set(raw)) != len(raw):
        raise _fail(source, key, f"lists a name twice: {list(raw)}")
    return tuple(raw)


def _int(raw: Any, source: str, key: str, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        raise _fail(source, key, f"must be an integer >= {low}; got {raw!r}")
    return raw


def _recipe(value: Any, folder: Optional[Path], source: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, key, f"must name a training config (a shipped name or a path); got {value!r}")
    given = Path(value)
    if folder is not None and not given.is_absolute() and (folder / given).is_file():
        return str((folder / given).resolve())
    return value


def compare_spec(raw: Mapping[str, Any], source: str = "compare config", folder: Optional[Path] = None) -> CompareSpec:
    """A :class:`CompareSpec` from a mapping; ``folder``: where relative recipe paths start.

    Raises:
        ConfigError: an unknown key, a bad value or a method without its recipe (naming the key).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a compare config must hold a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown compare key(s) {unknown} (known: {', '.join(_KEYS)})")
    recipes_raw = raw.get("recipes")
    if not isinstance(recipes_raw, Mapping) or "stage1" not in recipes_raw:
        raise _fail(source, "recipes", f"must be a mapping with at least stage1; got {recipes_raw!r}")
    bad = sorted(set(recipes_raw) - set(_RECIPES))
    if bad:
        raise _fail(source, "recipes", f"has unknown entries {bad} (known: {', '.join(_RECIPES)})")
    recipes = {k: _recipe(v, folder, source, f"recipes.{k}") for k, v in recipes_raw.items()}
    defaults = CompareSpec(name="", recipes={})
    methods = _names(raw.get("methods", list(defaults.methods)), source, "methods", METHODS)
    for method in methods:
        missing = [r for r in METHODS[method][1] if r not in recipes]
        if missing:
            raise _fail(source, "recipes", f"lacks {missing[0]!r}, which method {method!r} needs")
    seeds_raw = raw.get("seeds", list(defaults.seeds))
    if not isinstance(seeds_raw, (list, tuple)) or not seeds_raw:
        raise _fail(source, "seeds", f"must be a non-empty list of integers; got {seeds_raw!r}")
    seeds = tuple(_int(s, source, "seeds", 0) for s in seeds_raw)
    if len(set(seeds)) != len(seeds):
        raise _fail(source, "seeds", f"lists a seed twice: {list(seeds)}")
    vim_dim = raw.get("vim_dim")
    device = raw.get("device", defaults.device)
    if device not in ("auto", "cpu", "cuda"):
        raise _fail(source, "device", f"must be auto, cpu or cuda; got {device!r}")
    name = raw.get("name", Path(source).stem)
    return CompareSpec(
        name=str(name), recipes=recipes, seeds=seeds, methods=methods,
        detectors=_names(raw.get("detectors", list(defaults.detectors)), source, "detectors", DETECTORS),
        knn_k=_int(raw.get("knn_k", defaults.knn_k), source, "knn_k", 1),
        vim_dim=None if vim_dim is None else _int(vim_dim, source, "vim_dim", 1),
        quick_epochs=_int(raw.get("quick_epochs", defaults.quick_epochs), source, "quick_epochs", 1),
        device=device, source=source,
    )


def load_compare_spec(path_or_name: str | Path) -> CompareSpec:
    """Read a compare YAML file, or a shipped one by name (:func:`shipped_compare_configs`).

    Raises:
        ConfigError: missing file, invalid YAML or a bad key (naming the file and the key).
    """
    given = Path(path_or_name)
    path = given
    if not path.is_file() and len(given.parts) == 1 and given.suffix in ("", ".yaml"):
        path = _CONFIG_DIR / f"{given.stem}.yaml"
    if not path.is_file():
        raise ConfigError(f"compare config not found: {str(path_or_name)!r} "
                          f"(shipped: {', '.join(shipped_compare_configs()) or 'none'})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"compare config {str(path)!r} is not valid YAML: {exc}") from None
    shipped = path.resolve().parent == _CONFIG_DIR
    return compare_spec(raw or {}, str(path), None if shipped else path.resolve().parent)

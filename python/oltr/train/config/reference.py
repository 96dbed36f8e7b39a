"""The config reference table (key, type, default, meaning), generated from the dataclasses.

``scripts/config_reference.py`` writes :func:`markdown` to ``docs/config-reference.md``; a
test checks that the committed file equals it, so the table cannot go stale.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from oltr.train.config._schema import Config, field_types, is_section_type
from oltr.train.config._values import describe_type
from oltr.train.config._view import thaw

__all__ = ["markdown", "rows"]

_INTRO = """\
# Training config reference

Generated from the typed config (`oltr.train.config`) by `scripts/config_reference.py`; do not
edit by hand. A config file is YAML with these keys; `oltr train CONFIG --set key=value` changes
one key (the value is read as the key's type).

* `base: NAME_OR_PATH` (first key of a file): inherit every value of another config (a shipped
  recipe's name such as `fashion_lt_stage1`, or a path relative to this file) and state only what
  differs. Sections merge key by key; a `base` chain may not loop.
* Paths (type `path`): `~` is expanded. A relative path in your config file is relative to that
  file's folder. In a shipped recipe, in a default and in `--set`, it is relative to the current
  directory. A loaded config, and the copy stored in `best.pt`, holds absolute paths.
* Shipped recipes are written, like the official code, for the folder you run in: the ImageNet-LT
  and Places-LT recipes read `./data/<data set>/*.txt` list files (and `data.root`, a placeholder
  to set) and write `./logs/...`; the embedded-data recipes (`fashion_lt_*`, `digits_lt_*`) read
  no files and write `runs/<data set>/stage1`, where the `model.init` of their stage 2 (`_stage2`),
  cRT (`_crt`) and LWS (`_lws`) recipes looks.
* Stages `crt` and `lws` (Kang et al., ICLR 2020) train only a classifier on the frozen backbone of
  the stage-1 `best.pt` in `model.init` (no gradient, BatchNorm statistics kept): `crt` a
  re-initialised linear classifier, `lws` one learned scale per class of the stage-1 classifier.
* The centroids' learning-rate schedule follows `optim.step_size` / `optim.gamma` unless
  `centroids.step_size` / `centroids.gamma` are set (the official code uses one schedule for both).
* A checkpoint's stored config is checked again when the checkpoint is loaded; `num_workers` and
  `threads` above this machine's bound are lowered to it (with a warning).
"""


def rows() -> list[tuple[str, str, str, str]]:
    """``(key, type, default, meaning)`` of every leaf key, in declaration order."""
    return _rows(Config, "", Config())


def _rows(cls: type, prefix: str, defaults: Any) -> list[tuple[str, str, str, str]]:
    out = []
    types = field_types(cls)
    for f in dataclasses.fields(cls):
        tp, key = types[f.name], f"{prefix}{f.name}"
        if is_section_type(tp):
            out.extend(_rows(tp, f"{key}.", getattr(defaults, f.name)))
            continue
        kind = describe_type(tp, path=bool(f.metadata.get("path")))
        check = f.metadata.get("check")
        if check is not None:
            kind = f"{kind}, {check.describe()}"
        out.append((key, kind, _yaml(getattr(defaults, f.name)), f.metadata["doc"]))
    return out


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    if isinstance(value, (dict, list, tuple)) or hasattr(value, "items"):
        return str(thaw(value))
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The reference page: a short introduction and the table, ending with a newline."""
    lines = [_INTRO, "| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, doc in rows():
        lines.append(f"| `{key}` | {_cell(kind)} | `{_cell(default)}` | {_cell(doc)} |")
    return "\n".join(lines) + "\n"

"""Data: list-file and in-memory datasets, split builders, samplers, shot groups.

* :class:`ListDataset`, :func:`read_list_file`, :func:`write_list_file`,
  :func:`write_image_list` — the official ``<path> <label>`` list format.
* :class:`ArrayDataset`, :func:`images_to_tensor` — uint8 arrays as float tensors.
* :func:`load_image` — one image file as a PIL image (16-bit scaled to 8 bit; errors
  name the file).
* :func:`longtail_counts`, :func:`make_longtail_split`, :func:`make_balanced_split`,
  :func:`make_open_split`, :func:`remap_labels` — seeded split builders;
  :func:`check_counts` validates per-class counts.
* :class:`ClassAwareSampler`, :class:`ShardedSampler` — seeded, DDP-sharded samplers;
  :func:`merge_shards` puts per-rank outputs back in order.
* :func:`shot_groups` — many / medium / few-shot classes (official or paper rule).

Submodules that need torch are imported on first use, so ``oltr.data.shot_groups`` and
the split builders stay cheap.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ListDataset": "oltr.data.list_dataset",
    "ListFileError": "oltr.data.list_file",
    "read_list_file": "oltr.data.list_file",
    "write_list_file": "oltr.data.list_file",
    "write_image_list": "oltr.data.image_folder",
    "ArrayDataset": "oltr.data.array_dataset",
    "load_image": "oltr.data.images",
    "images_to_tensor": "oltr.data.array_dataset",
    "OpenSplit": "oltr.data.splits",
    "check_counts": "oltr.data.splits",
    "longtail_counts": "oltr.data.splits",
    "make_balanced_split": "oltr.data.splits",
    "make_longtail_split": "oltr.data.splits",
    "make_open_split": "oltr.data.splits",
    "remap_labels": "oltr.data.splits",
    "ClassAwareSampler": "oltr.data.samplers",
    "ShardedSampler": "oltr.data.samplers",
    "merge_shards": "oltr.data.samplers",
    "SHOT_RULES": "oltr.data.shots",
    "ShotGroups": "oltr.data.shots",
    "shot_groups": "oltr.data.shots",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'oltr.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

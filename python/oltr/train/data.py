"""Datasets and loaders named by a config's ``data`` section.

``data.source``:

* ``"fashion_lt"`` / ``"digits_lt"``: the embedded datasets (:mod:`oltr.datasets`), held
  in memory as :class:`oltr.data.ArrayDataset` (images float32 ``(1, S, S)`` in [0, 1]).
* ``"lists"``: official list files (``<relative path> <label>``) read by
  :class:`oltr.data.ListDataset`; the open-set list's images are read from
  ``data.open_root`` (the official code reads them from ``./data/<ds>/<ds>_open``).

Every dataset item is ``(image, label, index_or_path)``; labels are ``0..K-1``, ``-1`` for
the open set.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sized, cast, runtime_checkable

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from oltr.data.splits import check_counts
from oltr.train.config import ConfigError
from oltr.train.distributed import rank, world_size
from oltr.train.transforms import build_transform, image_mode

__all__ = ["DataBundle", "build_data", "eval_loader", "steps_per_epoch", "train_loader"]


@dataclass
class DataBundle:
    """The splits of one config's data.

    Attributes:
        train: training split with training transforms; train_plain: the same samples with
            evaluation transforms (memory initialisation, as the official ``train_plain``).
        val, test: known-class splits; open: open-set split (labels -1) or None.
        train_labels: read-only ``int64 (N,)`` training labels; train_counts: tuple of K
            ints (training images per class).
        class_names: K names (``"class_<k>"`` when the source has none).

    Raises:
        ValueError: ``train_counts`` is not one non-negative count per class.
    """

    train: Dataset
    train_plain: Dataset
    val: Dataset
    test: Dataset
    open: Optional[Dataset]
    train_labels: np.ndarray
    train_counts: tuple[int, ...]
    class_names: list[str]

    def __post_init__(self) -> None:
        labels = np.array(self.train_labels, dtype=np.int64)
        labels.setflags(write=False)
        self.train_labels = labels
        self.train_counts = check_counts(self.train_counts, len(self.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Dataset:
        """``"train"``, ``"val"``, ``"test"``, ``"open"`` or ``"test_open"`` (test then open)."""
        if name == "test_open":
            if self.open is None:
                raise ConfigError("no open-set split in this config (data.open_list is empty)")
            return ConcatDataset([self.test, self.open])
        if name not in ("train", "train_plain", "val", "test", "open"):
            raise ValueError(f"split must be train, val, test, open or test_open; got {name!r}")
        dataset = getattr(self, name)
        if dataset is None:
            raise ConfigError(f"no {name!r} split in this config")
        return dataset


def _embedded(config: Mapping[str, Any]) -> DataBundle:
    from oltr import datasets

    data = config["data"]
    source = data["source"]
    bundle = datasets.fashion_lt() if source == "fashion_lt" else datasets.digits_lt(seed=data["seed"])
    return DataBundle(
        train=bundle.torch_dataset("train"),
        train_plain=bundle.torch_dataset("train"),
        val=bundle.torch_dataset("val"),
        test=bundle.torch_dataset("test"),
        open=bundle.torch_dataset("open"),
        train_labels=bundle.train_labels,
        train_counts=bundle.train_counts,
        class_names=list(bundle.class_names),
    )


def _from_lists(config: Mapping[str, Any]) -> DataBundle:
    from oltr.data import ListDataset, ListFileError

    data = config["data"]
    for key in ("train_list", "val_list", "test_list"):
        if not data[key]:
            raise ConfigError(f"data.source 'lists' needs data.{key}")
    on_missing = "skip" if data["skip_missing"] else "raise"
    mode = image_mode(config)
    num_classes = int(config["model"]["num_classes"])
    train_tf, eval_tf = build_transform(config, train=True), build_transform(config, train=False)

    def make(list_key: str, transform, root: str, **labels: Any) -> ListDataset:
        try:
            return ListDataset(data[list_key], root, transform, mode=mode, on_missing=on_missing, **labels)
        except ListFileError as exc:
            known = f" (model.num_classes is {num_classes})" if "num_classes" in labels else ""
            raise ConfigError(f"data.{list_key}: {exc}{known}") from exc

    known = {"num_classes": num_classes}  # labels in [0, model.num_classes), as the model's outputs
    train = make("train_list", train_tf, data["root"], **known)
    open_set = None
    if data["open_list"]:
        open_set = make("open_list", eval_tf, data["open_root"] or data["root"], open_set=True)
    return DataBundle(
        train=train,
        train_plain=train.with_transform(eval_tf),
        val=make("val_list", eval_tf, data["root"], **known),
        test=make("test_list", eval_tf, data["root"], **known),
        open=open_set,
        train_labels=train.labels,
        train_counts=tuple(np.bincount(train.labels, minlength=num_classes).tolist()),
        class_names=_list_class_names(data, num_classes),
    )


def _list_class_names(data: dict[str, Any], num_classes: int) -> list[str]:
    """Names from ``classes.txt`` beside ``data.train_list`` or in ``data.root``
    (:mod:`oltr.data.class_names`), else ``class_<k>``."""
    from oltr.data.class_names import (
        default_class_names,
        find_classes_file,
        read_class_names,
    )

    found = find_classes_file([Path(data["train_list"]).parent, data["root"]])
    return read_class_names(found, num_classes) if found is not None else default_class_names(num_classes)


def _require_samples(config: Mapping[str, Any], bundle: DataBundle) -> None:
    """An empty train or val split stops here, before any model or optimiser exists."""
    data = config["data"]
    for split in ("train", "val"):
        dataset = getattr(bundle, split)
        if len(cast(Sized, dataset)) == 0:
            where = (f"data.{split}_list {data[f'{split}_list']}" if data["source"] == "lists"
                     else f"data.source {data['source']!r}")
            skipped = len(getattr(dataset, "skipped", ()))
            note = f" ({skipped} unreadable images were skipped)" if skipped else ""
            raise ConfigError(f"the {split} split is empty: {where} lists no usable image{note}")


def build_data(config: Mapping[str, Any]) -> DataBundle:
    """The :class:`DataBundle` of ``config``; checks ``model.num_classes`` against the data.

    Raises:
        ConfigError: missing list files in the config, an empty train or val split,
            ``model.num_classes`` not that of an embedded dataset; or a malformed list file, a
            train / val / test label outside ``[0, model.num_classes)``, an open-set label other
            than ``-1``; the message says
            ``data.<key>: <file>:<line>: ...`` (raised from the ``oltr.data.ListFileError``).
        FileNotFoundError / OSError: missing or unreadable images (naming the file).
    """
    source = config["data"]["source"]
    bundle = _from_lists(config) if source == "lists" else _embedded(config)
    if bundle.num_classes != config["model"]["num_classes"]:
        raise ConfigError(
            f"model.num_classes is {config['model']['num_classes']} but data.source "
            f"{source!r} has {bundle.num_classes} known classes"
        )
    _require_samples(config, bundle)
    return bundle


def steps_per_epoch(config: Mapping[str, Any], data: DataBundle) -> int:
    """Training steps per epoch: ``steps_per_epoch`` from the config, else
    ``int(len(train) / batch_size)`` as the official code (at least 1)."""
    configured = config["steps_per_epoch"]
    if configured:
        return int(configured)
    return max(1, int(len(cast(Sized, data.train)) / int(config["batch_size"])))


def _per_rank_batch(batch_size: int) -> int:
    replicas = world_size()
    if batch_size % replicas:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {replicas} processes")
    return batch_size // replicas


@runtime_checkable
class EpochSampler(Protocol):
    """A sampler whose order depends on the epoch: every sampler :func:`train_loader` builds
    (``isinstance(loader.sampler, EpochSampler)`` holds; DataLoader types it as any Iterable)."""

    def set_epoch(self, epoch: int) -> None: ...


def train_loader(config: Mapping[str, Any], data: DataBundle) -> DataLoader:
    """Training loader, seeded and sharded, by ``sampler.kind``: ``shuffle``, ``class_aware``
    (:class:`oltr.data.ClassAwareSampler`), ``square_root`` / ``progressive``
    (:mod:`oltr.data.rebalancing_samplers`; progressive over ``epochs``).

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. ``batch_size`` is global;
    each of ``world_size()`` ranks loads ``batch_size / world_size()``. Every sampler but
    ``shuffle`` draws an epoch of :func:`steps_per_epoch` × ``batch_size`` items, so the loader
    yields exactly the epoch's batches.
    """
    from oltr.data import ClassAwareSampler, ShardedSampler

    seed = int(config["seed"])
    kind = config["sampler"]["kind"]
    if kind in ("square_root", "progressive"):
        from oltr.data.rebalancing_samplers import ProgressiveSampler, SquareRootSampler

        common = {"seed": seed, "num_samples": steps_per_epoch(config, data) * int(config["batch_size"]),
                  "num_replicas": world_size(), "rank": rank()}
        sampler = (SquareRootSampler(data.train_labels, **common) if kind == "square_root"
                   else ProgressiveSampler(data.train_labels, total_epochs=int(config["epochs"]), **common))
    elif kind == "class_aware":
        # an epoch's stream is exactly the items the epoch trains on, so the continuing
        # class cycles pick up the next epoch where this one stopped (as the official one)
        sampler = ClassAwareSampler(
            data.train_labels, samples_per_class=config["sampler"]["samples_per_class"],
            seed=seed, num_samples=steps_per_epoch(config, data) * int(config["batch_size"]),
            num_replicas=world_size(), rank=rank(),
        )
    else:
        sampler = ShardedSampler(data.train, shuffle=True, seed=seed,
                                 num_replicas=world_size(), rank=rank(), pad=True)
    return DataLoader(
        data.train, batch_size=_per_rank_batch(int(config["batch_size"])), sampler=sampler,
        num_workers=int(config["num_workers"]), drop_last=False,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )


def eval_loader(config: Mapping[str, Any], dataset: Dataset, shard: bool = False) -> DataLoader:
    """In-order loader for evaluation; ``shard=True`` gives this rank its share (no padding)."""
    sampler = None
    if shard:
        from oltr.data import ShardedSampler

        sampler = ShardedSampler(dataset, shuffle=False, num_replicas=world_size(), rank=rank(), pad=False)
    return DataLoader(dataset, batch_size=int(config["eval"]["batch_size"]), shuffle=False,
                      sampler=sampler, num_workers=int(config["num_workers"]))

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

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from oltr.train.config import ConfigError
from oltr.train.distributed import rank, world_size
from oltr.train.transforms import build_transform, image_mode

__all__ = ["DataBundle", "build_data", "eval_loader", "train_loader"]


@dataclass
class DataBundle:
    """The splits of one config's data.

    Attributes:
        train: training split with training transforms; train_plain: the same samples with
            evaluation transforms (memory initialisation, as the official ``train_plain``).
        val, test: known-class splits; open: open-set split (labels -1) or None.
        train_labels: ``int64 (N,)`` training labels; train_counts: ``int64 (K,)``.
        class_names: K names (``"class_<k>"`` when the source has none).
    """

    train: Dataset
    train_plain: Dataset
    val: Dataset
    test: Dataset
    open: Optional[Dataset]
    train_labels: np.ndarray
    train_counts: np.ndarray
    class_names: list[str]

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


def _embedded(config: dict[str, Any]) -> DataBundle:
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
        train_labels=np.asarray(bundle.train_labels, dtype=np.int64),
        train_counts=np.asarray(bundle.train_counts, dtype=np.int64),
        class_names=list(bundle.class_names),
    )


def _from_lists(config: dict[str, Any]) -> DataBundle:
    from oltr.data import ListDataset

    data = config["data"]
    for key in ("train_list", "val_list", "test_list"):
        if not data[key]:
            raise ConfigError(f"data.source 'lists' needs data.{key}")
    on_missing = "skip" if data["skip_missing"] else "raise"
    mode = image_mode(config)
    train_tf, eval_tf = build_transform(config, train=True), build_transform(config, train=False)

    def make(list_key: str, transform, root: str) -> ListDataset:
        return ListDataset(data[list_key], root, transform, mode=mode, on_missing=on_missing)

    train = make("train_list", train_tf, data["root"])
    train_plain = make("train_list", eval_tf, data["root"])
    open_set = make("open_list", eval_tf, data["open_root"] or data["root"]) if data["open_list"] else None
    labels = np.asarray(train.labels, dtype=np.int64)
    num_classes = int(config["model"]["num_classes"])
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ConfigError(
            f"{data['train_list']}: training labels must lie in [0, {num_classes}) "
            f"(model.num_classes); found {int(labels.min())}..{int(labels.max())}"
        )
    return DataBundle(
        train=train,
        train_plain=train_plain,
        val=make("val_list", eval_tf, data["root"]),
        test=make("test_list", eval_tf, data["root"]),
        open=open_set,
        train_labels=labels,
        train_counts=np.bincount(labels, minlength=num_classes).astype(np.int64),
        class_names=[f"class_{k}" for k in range(num_classes)],
    )


def build_data(config: dict[str, Any]) -> DataBundle:
    """The :class:`DataBundle` of ``config``; checks ``model.num_classes`` against the data.

    Raises:
        ConfigError: missing list files in the config, labels outside ``model.num_classes``.
        FileNotFoundError / oltr.data.ListFileError: unreadable list files or images.
    """
    source = config["data"]["source"]
    bundle = _from_lists(config) if source == "lists" else _embedded(config)
    if bundle.num_classes != config["model"]["num_classes"]:
        raise ConfigError(
            f"model.num_classes is {config['model']['num_classes']} but data.source "
            f"{source!r} has {bundle.num_classes} known classes"
        )
    return bundle


def _per_rank_batch(batch_size: int) -> int:
    replicas = world_size()
    if batch_size % replicas:
        raise ConfigError(f"batch_size {batch_size} is not divisible by the {replicas} processes")
    return batch_size // replicas


def train_loader(config: dict[str, Any], data: DataBundle) -> DataLoader:
    """Training loader: shuffled (``sampler.kind: shuffle``) or class-aware, seeded, sharded.

    Call ``loader.sampler.set_epoch(epoch)`` before each epoch. ``batch_size`` is global;
    each of ``world_size()`` ranks loads ``batch_size / world_size()``.
    """
    from oltr.data import ClassAwareSampler, ShardedSampler

    seed = int(config["seed"])
    if config["sampler"]["kind"] == "class_aware":
        sampler = ClassAwareSampler(
            data.train_labels, samples_per_class=config["sampler"]["samples_per_class"],
            seed=seed, num_replicas=world_size(), rank=rank(),
        )
    else:
        sampler = ShardedSampler(data.train, shuffle=True, seed=seed,
                                 num_replicas=world_size(), rank=rank(), pad=True)
    return DataLoader(
        data.train, batch_size=_per_rank_batch(int(config["batch_size"])), sampler=sampler,
        num_workers=int(config["num_workers"]), drop_last=False,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )


def eval_loader(config: dict[str, Any], dataset: Dataset, shard: bool = False) -> DataLoader:
    """In-order loader for evaluation; ``shard=True`` gives this rank its share (no padding)."""
    sampler = None
    if shard:
        from oltr.data import ShardedSampler

        sampler = ShardedSampler(dataset, shuffle=False, num_replicas=world_size(), rank=rank(), pad=False)
    return DataLoader(dataset, batch_size=int(config["eval"]["batch_size"]), shuffle=False,
                      sampler=sampler, num_workers=int(config["num_workers"]))

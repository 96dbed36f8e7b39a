"""``oltr predict``: label new inputs with a trained model, flagging unknowns.

Inputs (one kind per call):

* image files (any PIL format), transformed as the model's evaluation split;
* one list file (``.txt``/``.lst``, the official ``<path> <label>`` format; paths relative
  to ``root``, by default the list file's folder; the listed labels are ignored);
* one ``.npy``: direct features float ``(N, D)`` go straight to the classifier and memory
  (no backbone); uint8 images ``(N, H, W)`` or ``(N, C, H, W)`` go through the model.

Each input gives one record::

    {"input": str, "label": int (-1 = unknown), "class_name": str ("unknown" if -1),
     "closed_label": int, "unknown": bool, "max_softmax": float,
     "scores": {"msp", "max_logit", "energy", "reachability"}}

``scores`` are outlier scores (larger = more unknown, :mod:`oltr.scores`). A sample is
unknown when its ``msp`` score is above the threshold chosen on validation (``rule="val"``,
stored in the checkpoint) or its max softmax probability is below the official 0.1
(``rule="official"``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from oltr.errors import OLTRError
from oltr.train import distributed as dist_seam
from oltr.train.evaluation import outlier_scores
from oltr.train.gather import gather_outputs
from oltr.train.inference import classify_features
from oltr.train.restore import load_trained_model
from oltr.train.trainer import resolve_device
from oltr.train.transforms import build_transform, image_mode

__all__ = ["InputError", "RULES", "predict", "write_jsonl"]

RULES = ("val", "official")
_LIST_SUFFIXES = (".txt", ".lst", ".list")


class InputError(OLTRError, ValueError):
    """Inputs to predict are missing, of mixed kinds, or do not fit the model."""


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[str], transform, mode: str) -> None:
        self.paths, self.transform, self.mode = list(paths), transform, mode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from oltr.data.list_dataset import _load_image

        return self.transform(_load_image(self.paths[index], self.mode)), -1, self.paths[index]


def _collect(inputs: Sequence[str | Path]) -> tuple[str, list[str]]:
    if not inputs:
        raise InputError("no inputs given")
    paths = [str(p) for p in inputs]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise InputError(f"input not found: {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    suffixes = {Path(p).suffix.lower() for p in paths}
    if ".npy" in suffixes or suffixes & set(_LIST_SUFFIXES):
        if len(paths) != 1:
            raise InputError("give one .npy or one list file, or any number of image files (not a mix)")
        return ("npy" if paths[0].lower().endswith(".npy") else "list"), paths
    return "images", paths


def _records(logits: np.ndarray, features: np.ndarray, names: list[str], model, checkpoint, rule: str
             ) -> Iterator[dict[str, Any]]:
    has_memory = model.stage == "oltr" or checkpoint.get("feature_means") is not None
    memory = model.centroids.detach().cpu().numpy() if has_memory else None
    scale = float(getattr(model.classifier, "reach_scale", 10.0))
    scores = outlier_scores(logits, features, memory, scale)
    closed = logits.argmax(axis=1)
    thresholds = checkpoint["thresholds"]
    if rule == "val":
        unknown = scores["msp"] > float(thresholds["msp"])
    else:
        unknown = -scores["msp"] < float(thresholds["open_threshold"])
    class_names = checkpoint["class_names"]
    for i, name in enumerate(names):
        label = -1 if unknown[i] else int(closed[i])
        yield {
            "input": name, "label": label,
            "class_name": "unknown" if label == -1 else class_names[label],
            "closed_label": int(closed[i]), "unknown": bool(unknown[i]),
            "max_softmax": float(-scores["msp"][i]),
            "scores": {k: float(v[i]) for k, v in scores.items()},
        }


@torch.no_grad()
def predict(
    checkpoint_path: str | Path, inputs: Sequence[str | Path], device: str = "auto",
    batch_size: int = 256, root: str | Path | None = None, rule: str = "val",
) -> Iterator[dict[str, Any]]:
    """Records (see the module docstring) for ``inputs``, in input order.

    Raises:
        InputError: missing inputs, mixed kinds, or arrays whose shape fits neither the
            feature size nor the image size.
        oltr.checkpoint.CheckpointError: unreadable checkpoint.
    """
    if rule not in RULES:
        raise InputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}")
    kind, paths = _collect(inputs)
    dev = resolve_device(device)
    model, checkpoint = load_trained_model(checkpoint_path, dev)
    config = checkpoint["config"]
    if kind == "npy":
        try:
            array = np.load(paths[0], allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"cannot read {paths[0]!r} as a .npy array: {exc}") from None
        if array.ndim == 2 and array.shape[1] == model.feat_dim and np.issubdtype(array.dtype, np.number):
            features = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            if not torch.isfinite(features).all():
                raise InputError(f"{paths[0]!r}: features contain NaN or Inf")
            logits = classify_features(model, features, batch_size)
            names = [f"{paths[0]}[{i}]" for i in range(len(array))]
            if dist_seam.is_main():  # no backbone: cheap, so under torchrun rank 0 alone answers
                yield from _records(logits, features.numpy(), names, model, checkpoint, rule)
            return
        if array.dtype == np.uint8 and array.ndim in (3, 4):
            from oltr.data import ArrayDataset

            try:
                dataset: Dataset = ArrayDataset(array)
                model(dataset[0][0].unsqueeze(0).to(dev))
            except ValueError as exc:
                raise InputError(f"{paths[0]!r}: images of shape {array.shape[1:]} do not fit the model: {exc}") from None
            names = [f"{paths[0]}[{i}]" for i in range(len(array))]
        else:
            raise InputError(
                f"{paths[0]!r}: expected features (N, {model.feat_dim}) or uint8 images (N, H, W); "
                f"got {array.dtype} {array.shape}")
    elif kind == "list":
        from oltr.data import ListDataset

        base = Path(root) if root is not None else Path(paths[0]).parent
        dataset = ListDataset(paths[0], base, build_transform(config, train=False), mode=image_mode(config))
        names = list(dataset.paths)
    else:
        dataset = _ImageFiles(paths, build_transform(config, train=False), image_mode(config))
        names = paths
    if dist_seam.is_distributed():
        yield from _sharded_records(model, dataset, names, batch_size, dev, checkpoint, rule)
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    offset = 0
    for batch in loader:
        logits, extras = model(batch[0].to(dev))
        chunk = names[offset:offset + len(logits)]
        offset += len(logits)
        yield from _records(logits.float().cpu().numpy(), extras.direct.float().cpu().numpy(), chunk,
                            model, checkpoint, rule)


#: batches per rank in one gathering round of a sharded predict (bounds rank 0's memory)
_GATHER_BATCHES = 16


def _sharded_records(model, dataset: Dataset, names: list[str], batch_size: int, dev: torch.device,
                     checkpoint, rule: str) -> Iterator[dict[str, Any]]:
    """Under torchrun, in rounds of ``_GATHER_BATCHES`` batches per rank: each rank runs its
    share of the round's inputs (every W-th), rank 0 gathers the outputs back in input order
    and yields their records; the other ranks yield none."""
    from torch.utils.data import Subset

    from oltr.data import ShardedSampler
    from oltr.train.gather import run_shard

    step = _GATHER_BATCHES * batch_size * dist_seam.world_size()
    for start in range(0, len(dataset), step):
        part = Subset(dataset, range(start, min(start + step, len(dataset))))
        loader = DataLoader(part, batch_size=batch_size, sampler=ShardedSampler(part, shuffle=False, pad=False))
        outputs = gather_outputs(run_shard(model, loader, dev), everywhere=False)
        if outputs is not None:
            yield from _records(outputs.logits, outputs.features, names[start:start + len(part)], model,
                                checkpoint, rule)


def write_jsonl(records: Iterator[dict[str, Any]], stream: TextIO) -> int:
    """Write each record as one JSON line; returns how many were written."""
    count = 0
    for record in records:
        stream.write(json.dumps(record) + "\n")
        count += 1
    stream.flush()
    return count

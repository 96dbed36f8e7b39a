"""``oltr predict``: a thin shell over :class:`oltr.Predictor` that reads inputs from files.

Inputs (one kind per call):

* image files (any PIL format), transformed as the model's evaluation split;
* one list file (``.txt``/``.lst``/``.list``, the official ``<path> <label>`` format; paths
  relative to ``root``, by default the list file's folder; the listed labels are ignored);
* one ``.npy``: direct features float ``(N, D)`` go straight to the classifier and memory
  (no backbone); uint8 images (layouts of :mod:`oltr.inference.inputs`) go through the model.

Each input gives one record (:meth:`oltr.inference.Prediction.records`)::

    {"input": str, "label": int (-1 = unknown), "class_name": str ("unknown" if -1),
     "closed_label": int, "unknown": bool, "max_softmax": float,
     "scores": {"msp", "max_logit", "energy", "reachability"}}

``scores`` are outlier scores (larger = more unknown). By default a sample is unknown by the
rejection stored in the checkpoint (the ``msp`` threshold chosen on validation, ``rule="val"``);
``rule="official"``: max softmax probability below 0.1.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from oltr.inference.decisions import RULES
from oltr.inference.inputs import InputError, check_paths
from oltr.inference.predictor import Prediction, Predictor
from oltr.train import distributed as dist_seam

__all__ = ["LIST_SUFFIXES", "RULES", "InputError", "collect_inputs", "predict", "predictions", "write_jsonl"]

#: suffixes of list files among predict's inputs
LIST_SUFFIXES = (".txt", ".lst", ".list")
_LIST_SUFFIXES = LIST_SUFFIXES  # the earlier private name
#: batches per rank in one gathering round of a sharded predict (bounds rank 0's memory)
_GATHER_BATCHES = 16


def collect_inputs(inputs: Sequence[str | Path]) -> tuple[str, list[str]]:
    """``(kind, paths)``: ``"images"``, ``"list"`` or ``"npy"``; raises :class:`InputError` for
    missing files or a mix of kinds."""
    if not inputs:
        raise InputError("no inputs given")
    paths = [str(p) for p in inputs]
    check_paths(paths)
    suffixes = {Path(p).suffix.lower() for p in paths}
    if ".npy" in suffixes or suffixes & set(LIST_SUFFIXES):
        if len(paths) != 1:
            raise InputError("give one .npy or one list file, or any number of image files (not a mix)")
        return ("npy" if paths[0].lower().endswith(".npy") else "list"), paths
    return "images", paths


def _read_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"cannot read {path!r} as a .npy array: {exc}") from None


def predictions(predictor: Predictor, inputs: Sequence[str | Path], root: str | Path | None = None
                ) -> Iterator[Prediction]:
    """:class:`Prediction` chunks for ``inputs`` (the kinds of the module docstring), in input
    order. Under ``torchrun`` the images are sharded over the ranks and rank 0 alone yields."""
    kind, paths = collect_inputs(inputs)
    if kind == "npy":
        array = _read_npy(paths[0])
        names = [f"{paths[0]}[{i}]" for i in range(len(array))]
        if array.dtype != np.uint8:
            if not (array.ndim == 2 and array.shape[1] == predictor.model.feat_dim
                    and np.issubdtype(array.dtype, np.number) and not np.iscomplexobj(array)):
                raise InputError(f"{paths[0]!r}: expected features (N, {predictor.model.feat_dim}) or uint8 "
                                 f"images (N, H, W); got {array.dtype} {array.shape}")
            try:
                result = predictor.predict_features(array, names)
            except InputError as exc:
                raise InputError(f"{paths[0]!r}: {exc}") from None
            if dist_seam.is_main():  # no backbone: cheap, so under torchrun rank 0 alone answers
                yield result
            return
        from oltr.inference.inputs import split_uint8

        try:
            sources: list[Any] = split_uint8(array)
        except InputError as exc:
            raise InputError(f"{paths[0]!r}: {exc}") from None
    elif kind == "list":
        from oltr.data.list_file import read_list_file

        base = Path(root) if root is not None else Path(paths[0]).parent
        tokens, _ = read_list_file(paths[0])
        sources = [str(base / t) for t in tokens]
        check_paths(sources)
        names = sources
    else:
        sources, names = paths, paths
    dataset = predictor.image_dataset(sources, names)
    if not dist_seam.is_distributed():
        for start in range(0, len(dataset), predictor.batch_size):
            from torch.utils.data import Subset

            part = Subset(dataset, range(start, min(start + predictor.batch_size, len(dataset))))
            yield predictor.decide(predictor.run_dataset(part), names[start:start + len(part)])
        return
    yield from _sharded(predictor, dataset, names)


def _sharded(predictor: Predictor, dataset, names: list[str]) -> Iterator[Prediction]:
    """Under torchrun, in rounds of ``_GATHER_BATCHES`` batches per rank: each rank runs its
    share of the round's inputs (every W-th), rank 0 gathers the outputs back in input order
    and yields their predictions; the other ranks yield none."""
    from torch.utils.data import DataLoader, Subset

    from oltr.data import ShardedSampler
    from oltr.train.gather import gather_outputs, run_shard

    batch = predictor.batch_size
    step = _GATHER_BATCHES * batch * dist_seam.world_size()
    for start in range(0, len(dataset), step):
        part = Subset(dataset, range(start, min(start + step, len(dataset))))
        loader = DataLoader(part, batch_size=batch, sampler=ShardedSampler(part, shuffle=False, pad=False))
        outputs = gather_outputs(run_shard(predictor.runner, loader), everywhere=False)
        predictor.warn_input_mismatch()
        if outputs is not None:
            yield predictor.decide(outputs, names[start:start + len(part)])


def predict(
    checkpoint_path: str | Path, inputs: Sequence[str | Path], device: str = "auto",
    batch_size: int = 256, root: str | Path | None = None, rule: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Records (see the module docstring) for ``inputs``, in input order.

    ``rule``: None (the checkpoint's stored rejection), ``"val"`` or ``"official"``.

    Raises:
        InputError: missing inputs, mixed kinds, or arrays whose shape fits neither the
            feature size nor the images.
        oltr.checkpoint.CheckpointError: unreadable checkpoint.
    """
    if rule is not None and rule not in RULES:
        raise InputError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1; got {batch_size}")
    collect_inputs(inputs)  # input errors before the model is loaded
    predictor = Predictor.from_checkpoint(checkpoint_path, device, rule=rule, batch_size=batch_size)
    for chunk in predictions(predictor, inputs, root):
        yield from chunk.records()


def write_jsonl(records: Iterator[dict[str, Any]], stream: TextIO) -> int:
    """Write each record as one JSON line; returns how many were written."""
    count = 0
    for record in records:
        stream.write(json.dumps(record) + "\n")
        count += 1
    stream.flush()
    return count

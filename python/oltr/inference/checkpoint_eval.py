"""``oltr eval``: the report of a saved model on its config's splits or on the user's lists."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

__all__ = ["evaluate_checkpoint"]


def _listed_labels_error(list_file: Path, index: int, message: str) -> ValueError:
    """A ValueError naming ``list_file`` and the line of its ``index``-th entry."""
    from oltr.data.list_file import ListFileError

    seen = -1
    with open(list_file, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if line.split():
                seen += 1
                if seen == index:
                    return ListFileError(f"{list_file}:{lineno}: {message}")
    return ListFileError(f"{list_file}: {message}")  # pragma: no cover - index always found


def _list_dataset(list_file: str | Path, root: Optional[str | Path], config: Any, num_classes: int,
                  open_set: bool):
    """A :class:`oltr.data.ListDataset` with the evaluation transform; labels checked:
    an open list holds only ``-1``; a test list ``-1`` (unknown) or ``0..K-1``."""
    from oltr.data import ListDataset
    from oltr.train.transforms import build_transform, image_mode

    path = Path(list_file)
    base = Path(root) if root is not None else path.parent
    on_missing = "skip" if config["data"]["skip_missing"] else "raise"
    dataset = ListDataset(path, base, build_transform(config, train=False), mode=image_mode(config),
                          on_missing=on_missing)
    labels = dataset.labels
    if open_set:
        bad = (labels != -1).nonzero()[0]
        if bad.size:
            raise _listed_labels_error(path, int(bad[0]), f"label {int(labels[bad[0]])} in an open-set list "
                                       "(--open-list): every open-set image must be labelled -1 (unknown)")
    else:
        bad = ((labels < -1) | (labels >= num_classes)).nonzero()[0]
        if bad.size:
            raise _listed_labels_error(path, int(bad[0]), f"label {int(labels[bad[0]])} is outside the model's "
                                       f"{num_classes} classes (0..{num_classes - 1}; -1 = unknown)")
    if len(dataset) == 0:
        raise ValueError(f"{path}: the list holds no image")
    return dataset


def evaluate_checkpoint(
    path: str | Path, open_set: bool = False, split: str = "test", device: str = "auto",
    return_outputs: bool = False, test_list: Optional[str | Path] = None,
    open_list: Optional[str | Path] = None, root: Optional[str | Path] = None,
    overrides: Iterable[str] = (),
) -> Any:
    """The report (``oltr.report/1``, docs/report-schema.md) of the model in ``path``.

    Args:
        path: a model checkpoint (``best.pt``).
        open_set: add the config's open set (labels -1), as the official ``--test_open``.
        split: the config's ``"test"`` or ``"val"`` split (ignored with ``test_list``).
        device: ``auto``, ``cpu`` or ``cuda``.
        return_outputs: also return the :class:`Outputs` and the checkpoint dict.
        test_list: a list file (``<path> <label>``) to evaluate instead of the config's
            split; rows labelled ``-1`` count as unknown.
        open_list: a list file of unknown images (every label must be ``-1``), added to the
            evaluated samples.
        root: the folder the lists' paths are relative to (default: each list's folder).
        overrides: ``key=value`` config overrides (``oltr eval --set``).

    Under ``torchrun`` each rank runs its share; the outputs are gathered in input order.

    Returns:
        The report; its ``meta`` names the checkpoint, the data, the stage, the class names,
        the best epoch, the stored thresholds and the rejection rule. With
        ``return_outputs=True``: ``(report, Outputs, checkpoint)``.

    Raises:
        ValueError: a bad split, an open list with a label other than -1, a test list with a
            label outside the model's classes (the message names the file and line).
    """
    from torch.utils.data import ConcatDataset, Dataset

    from oltr.inference.decisions import Rejection
    from oltr.inference.loading import load_for_inference
    from oltr.inference.report import evaluate_outputs
    from oltr.train.data import build_data, eval_loader
    from oltr.train.gather import gather_outputs, run_shard

    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    loaded = load_for_inference(path, device, overrides)
    config, checkpoint, model = loaded.config, loaded.checkpoint, loaded.model
    datasets: list[Dataset] = []
    data = None
    if test_list is not None:
        datasets.append(_list_dataset(test_list, root, config, model.num_classes, open_set=False))
    else:
        data = build_data(config)
        datasets.append(data.split(split))
    if open_list is not None:
        datasets.append(_list_dataset(open_list, root, config, model.num_classes, open_set=True))
    elif open_set:
        data = data or build_data(config)
        datasets.append(data.split("open"))
    # one loader over every sample (batches as the official test ∪ open loader); under torchrun
    # each rank runs its share and the outputs are gathered back in input order
    dataset = datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)
    outputs = gather_outputs(run_shard(loaded.runner, eval_loader(config, dataset, shard=True)))
    meta = {
        "checkpoint": str(path), "stage": model.stage,
        "data": {"split": None if test_list is not None else split, "open_set": bool(open_set or open_list),
                 "test_list": None if test_list is None else str(test_list),
                 "open_list": None if open_list is None else str(open_list),
                 "root": None if root is None else str(root)},
        "class_names": loaded.class_names, "best_epoch": checkpoint["epoch"],
        "thresholds": dict(checkpoint["thresholds"]),
        "rejection": Rejection.from_checkpoint(checkpoint).to_dict(),
    }
    report = evaluate_outputs(outputs, loaded.train_counts, config["eval"], thresholds=checkpoint["thresholds"],
                              meta=meta)
    return (report, outputs, checkpoint) if return_outputs else report

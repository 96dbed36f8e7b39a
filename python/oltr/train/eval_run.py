"""``oltr eval``: metrics of a saved model on its config's test (and open) split."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from oltr.train.data import build_data, eval_loader
from oltr.train.evaluation import evaluate_outputs
from oltr.train.gather import gather_outputs, run_shard
from oltr.train.inference import Outputs
from oltr.train.restore import load_trained_model
from oltr.train.trainer import resolve_device

__all__ = ["evaluate_checkpoint"]


def evaluate_checkpoint(
    path: str | Path, open_set: bool = False, split: str = "test", device: str = "auto",
    return_outputs: bool = False,
) -> Any:
    """Evaluate the model of ``path`` on ``split`` (``"test"`` or ``"val"``).

    With ``open_set`` the split is followed by the open set (labels -1), as the official
    ``--test_open``; thresholds chosen on validation are read from the checkpoint.

    Returns:
        The metrics dict of :func:`oltr.train.evaluation.evaluate_outputs` plus
        ``"checkpoint"``, ``"split"``, ``"stage"``, ``"class_names"``, ``"thresholds"``;
        with ``return_outputs=True``, ``(metrics, Outputs, checkpoint)``.
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    dev = resolve_device(device)
    model, checkpoint = load_trained_model(path, dev)
    config = checkpoint["config"]
    data = build_data(config)
    dataset = data.split("test_open" if open_set and split == "test" else split)
    # under torchrun each rank runs its share; the outputs are gathered back in input order
    outputs = gather_outputs(run_shard(model, eval_loader(config, dataset, shard=True), dev))
    if open_set and split == "val":
        opened = gather_outputs(run_shard(model, eval_loader(config, data.split("open"), shard=True), dev))
        outputs = Outputs(np.concatenate([outputs.logits, opened.logits]),
                          np.concatenate([outputs.features, opened.features]),
                          np.concatenate([outputs.labels, opened.labels]))
    memory = model.centroids.detach().cpu().numpy()
    has_memory = model.stage == "oltr" or checkpoint.get("feature_means") is not None
    metrics = evaluate_outputs(
        outputs, np.asarray(checkpoint["train_class_counts"]), config["eval"],
        centroids=memory if has_memory else None, thresholds=checkpoint["thresholds"],
        open_set=open_set, reach_scale=float(getattr(model.classifier, "reach_scale", 10.0)),
    )
    metrics = {"checkpoint": str(path), "split": split, "open_set": bool(open_set),
               "stage": model.stage, "class_names": checkpoint["class_names"],
               "best_epoch": checkpoint["epoch"], "thresholds": checkpoint["thresholds"], **metrics}
    return (metrics, outputs, checkpoint) if return_outputs else metrics

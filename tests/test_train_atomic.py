"""Checkpoints are written atomically: a failure mid-write leaves the last good file."""
from __future__ import annotations

import pytest
import torch

import oltr._io
from oltr.train import CheckpointError, load_model_checkpoint
from oltr.train.checkpoints import MODEL_FORMAT, save_checkpoint


def _payload(value: float) -> dict:
    return {"format": MODEL_FORMAT, "config": {}, "class_names": ["a"], "train_class_counts": [1],
            "state_dict": {"w": torch.full((4,), value)}, "centroids": None, "epoch": 1,
            "best_acc": value, "thresholds": {}}


def test_failure_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run" / "best.pt"
    save_checkpoint(_payload(1.0), path)
    real_save = torch.save

    def dying_save(obj, f, **kwargs):
        real_save(obj, f, **kwargs)
        f.truncate(f.tell() // 2)  # half the bytes reached the disk, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(oltr._io.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_payload(2.0), path)
    monkeypatch.setattr(oltr._io.torch, "save", real_save)
    loaded = load_model_checkpoint(path)
    assert loaded["best_acc"] == 1.0 and torch.equal(loaded["state_dict"]["w"], torch.ones(4))
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temp file left behind
    save_checkpoint(_payload(3.0), path)
    assert load_model_checkpoint(path)["best_acc"] == 3.0


def test_truncated_or_foreign_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "best.pt"
    save_checkpoint(_payload(1.0), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model_checkpoint(path)
    torch.save({"something": 1}, path)
    with pytest.raises(CheckpointError, match="not an oltr"):
        load_model_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_model_checkpoint(tmp_path / "missing.pt")

"""Progress bar (tqdm or built-in) and the JSON-lines log."""
from __future__ import annotations

import io
import json

import pytest

from oltr.train import progress as progress_mod
from oltr.train.progress import EpochProgress, JsonlLogger


@pytest.mark.parametrize("use_tqdm", [True, False])
def test_bar_shows_loss_accuracy_and_speed(monkeypatch, use_tqdm):
    if not use_tqdm:
        monkeypatch.setattr(progress_mod, "_tqdm", None)
    elif progress_mod._tqdm is None:
        pytest.skip("tqdm is not installed")
    stream = io.StringIO()
    bar = EpochProgress(2, "stage plain epoch 1/3", stream=stream)
    bar.update(loss=2.0, correct=1, batch=4)
    bar.update(loss=1.0, correct=3, batch=4)
    bar.close()
    assert bar.mean_loss == pytest.approx(1.5) and bar.accuracy == pytest.approx(0.5)
    assert bar.samples_per_s > 0 and bar.steps == 2
    text = stream.getvalue()
    assert "stage plain epoch 1/3" in text and "loss=1.5000" in text and "acc=0.500" in text and "img/s" in text


def test_disabled_bar_writes_nothing():
    stream = io.StringIO()
    bar = EpochProgress(1, "x", enabled=False, stream=stream)
    bar.update(1.0, 1, 1)
    bar.close()
    assert stream.getvalue() == "" and bar.accuracy == 1.0


def test_jsonl_logger_appends_records(tmp_path, capsys):
    log = JsonlLogger(tmp_path / "sub" / "log.jsonl", echo=True)
    log.log(event="epoch", epoch=1, val_top1=0.5)
    log.log(event="epoch", epoch=2, val_top1=0.75)
    records = [json.loads(x) for x in (tmp_path / "sub" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["val_top1"] == 0.75 and "time" in records[0]
    assert "val_top1=0.7500" in capsys.readouterr().err

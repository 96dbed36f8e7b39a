"""Progress bar (tqdm or built-in) and the JSON-lines log."""
from __future__ import annotations

import io
import json

import pytest

from oltr.train import progress as progress_mod
from oltr.train.progress import EpochProgress, JsonlLogger


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.mark.parametrize("use_tqdm", [True, False])
def test_a_terminal_gets_a_bar_with_loss_accuracy_and_speed(monkeypatch, use_tqdm):
    if not use_tqdm:
        monkeypatch.setattr(progress_mod, "_tqdm", None)
    elif progress_mod._tqdm is None:
        pytest.skip("tqdm is not installed")
    stream = _Terminal()
    bar = EpochProgress(2, "stage plain epoch 1/3", stream=stream)
    assert bar.terminal
    bar.update(loss=2.0, correct=1, batch=4)
    bar.update(loss=1.0, correct=3, batch=4)
    bar.close()
    assert bar.mean_loss == pytest.approx(1.5) and bar.accuracy == pytest.approx(0.5)
    assert bar.samples_per_s > 0 and bar.steps == 2
    text = stream.getvalue()
    assert "stage plain epoch 1/3" in text and "loss=1.5000" in text and "acc=0.500" in text and "img/s" in text
    assert "\r" in text  # redrawn in place


@pytest.mark.parametrize("use_tqdm", [True, False])
@pytest.mark.parametrize("total,expected_steps", [
    (2, [1, 2]),                                  # short epoch: a line per step
    (25, [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]),  # a line per tenth of the epoch
    (100, list(range(10, 101, 10))),
])
def test_elsewhere_plain_lines_every_tenth_of_the_epoch(monkeypatch, use_tqdm, total, expected_steps):
    if not use_tqdm:
        monkeypatch.setattr(progress_mod, "_tqdm", None)
    elif progress_mod._tqdm is None:
        pytest.skip("tqdm is not installed")
    stream = io.StringIO()  # a file or a pipe: isatty() is False
    bar = EpochProgress(total, "stage oltr epoch 2/3", stream=stream)
    assert not bar.terminal
    for step in range(total):
        bar.update(loss=1.0, correct=step % 2, batch=2)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert [int(line.split("step ")[1].split("/")[0]) for line in lines] == expected_steps
    assert all(line.startswith("stage oltr epoch 2/3 step ") and f"/{total} loss=1.0000" in line for line in lines)


def test_a_stream_without_isatty_counts_as_no_terminal():
    class Bare:
        def __init__(self):
            self.parts = []

        def write(self, text):
            self.parts.append(text)

        def flush(self):
            pass

    stream = Bare()
    bar = EpochProgress(1, "x", stream=stream)
    bar.update(1.0, 1, 1)
    bar.close()
    assert not bar.terminal and len(stream.parts) == 1
    assert stream.parts[0].startswith("x step 1/1 loss=1.0000 acc=1.000 ") and stream.parts[0].endswith("img/s\n")


@pytest.mark.parametrize("stream_type", [io.StringIO, _Terminal])
def test_disabled_bar_writes_nothing(stream_type):
    stream = stream_type()
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

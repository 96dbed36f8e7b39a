"""Per-epoch progress on stderr and a JSON-lines log file.

On a terminal (the stream's ``isatty()``) progress is a bar redrawn in place: ``tqdm`` when
it is installed, a small built-in bar otherwise. Anywhere else (a log file, a pipe, CI) it is
plain lines, one each time the epoch passes another tenth of its steps, so a redirected log
holds no carriage returns or bar redraws. Both are silent off rank 0 (see
:mod:`oltr.train.distributed`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from oltr.train.distributed import is_main

__all__ = ["EpochProgress", "JsonlLogger"]

try:  # optional dependency
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - exercised where tqdm is absent
    _tqdm = None


#: Plain-line mode writes a line each time the epoch passes another 1/PLAIN_LINES of its steps.
PLAIN_LINES = 10


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class EpochProgress:
    """Running loss, accuracy and speed over one epoch: a bar on a terminal, plain lines
    (at most :data:`PLAIN_LINES` per epoch, the last at the final step) otherwise.

    Args:
        total: number of steps in the epoch.
        description: the label, e.g. ``"stage plain epoch 3/30"``.
        enabled: False shows nothing (nothing is shown off rank 0 either).
        stream: where progress goes (stderr by default); its ``isatty()`` picks bar or lines.
    """

    def __init__(
        self, total: int, description: str, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.total = int(total)
        self.description = description
        self.loss_sum = 0.0
        self.correct = 0
        self.seen = 0
        self.steps = 0
        self._start = time.perf_counter()
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = bool(enabled) and is_main()
        self.terminal = _is_terminal(self._stream)
        self._bar = None
        self._last_draw = 0.0
        if self._enabled and self.terminal and _tqdm is not None:
            self._bar = _tqdm(
                total=self.total, desc=description, file=self._stream, leave=False,
                dynamic_ncols=True, unit="step",
            )

    def update(self, loss: float, correct: int, batch: int) -> None:
        """Record one step: its mean loss, its number of correct predictions and its size."""
        self.loss_sum += float(loss) * batch
        self.correct += int(correct)
        self.seen += int(batch)
        self.steps += 1
        if not self._enabled:
            return
        if not self.terminal:
            if self.steps * PLAIN_LINES // max(self.total, 1) > (self.steps - 1) * PLAIN_LINES // max(self.total, 1) \
                    or self.steps == self.total:
                self._stream.write(f"{self.description} step {self.steps}/{self.total} {self._postfix()}\n")
                self._stream.flush()
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)
            if self.steps == self.total:  # always draw the epoch's final state
                self._bar.refresh()
            return
        now = time.perf_counter()
        if now - self._last_draw > 0.2 or self.steps == self.total:
            self._last_draw = now
            width = 24
            filled = int(width * self.steps / max(self.total, 1))
            self._stream.write(
                f"\r{self.description} [{'#' * filled}{'.' * (width - filled)}] "
                f"{self.steps}/{self.total} {self._postfix()}"
            )
            self._stream.flush()

    def _postfix(self) -> str:
        return f"loss={self.mean_loss:.4f} acc={self.accuracy:.3f} {self.samples_per_s:.0f} img/s"

    @property
    def mean_loss(self) -> float:
        """Mean loss per sample so far (nan before the first step)."""
        return self.loss_sum / self.seen if self.seen else math.nan

    @property
    def accuracy(self) -> float:
        """Training top-1 so far (nan before the first step)."""
        return self.correct / self.seen if self.seen else math.nan

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._start

    @property
    def samples_per_s(self) -> float:
        elapsed = self.elapsed_s
        return self.seen / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        """Remove the bar (the epoch's summary goes to the log); nothing to do for lines."""
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and self.terminal and self.steps:
            self._stream.write("\n")
            self._stream.flush()


class JsonlLogger:
    """Appends one JSON object per line to ``path`` (rank 0 only), and echoes a short line.

    Args:
        path: the log file; its folder is created.
        echo: also print a one-line summary of each record to stderr.
    """

    def __init__(self, path: str | Path, echo: bool = True) -> None:
        self.path = Path(path)
        self.echo = echo
        if is_main():
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **record: Any) -> None:
        """Write ``record`` (plus a ``time`` stamp) as one JSON line."""
        if not is_main():
            return
        record = {"time": round(time.time(), 3), **record}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=_jsonable) + "\n")
        if self.echo:
            fields = " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in record.items() if k != "time"
            )
            print(fields, file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)

"""Helpers shared by the benchmark scripts in this folder: timing, and writing a script's
section of BENCHMARKS.md."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Callable


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def replace_section(document: str, title: str, new: str) -> str:
    """``document`` with the top-level section whose heading line is ``title`` replaced by
    ``new`` (appended when absent); every other section is kept as it was."""
    lines = document.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    if start is None:
        body = document.rstrip("\n")
        return (body + "\n\n" if body else "") + new.rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# ")), len(lines))
    kept_after = "\n".join(lines[end:])
    before = "\n".join(lines[:start]).rstrip("\n")
    parts = [p for p in (before, new.rstrip("\n"), kept_after.rstrip("\n")) if p]
    return "\n\n".join(parts) + "\n"


def write_section(path: str, text: str, title: str) -> None:
    target = Path(path)
    document = target.read_text() if target.exists() else ""
    temp = target.with_name(f".{target.name}.tmp")
    temp.write_text(replace_section(document, title, text))
    os.replace(temp, target)

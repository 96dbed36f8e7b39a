"""Plots write valid PNG files."""
from __future__ import annotations

import numpy as np
import pytest

from oltr.plots import plot_per_class_accuracy, plot_roc, plot_score_histogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    from PIL import Image

    data = path.read_bytes()
    with Image.open(path) as img:
        return data[:8] == PNG_MAGIC and img.format == "PNG" and img.size[0] > 100


def test_plots_write_png(tmp_path, rng):
    counts = [640, 320, 160, 80, 40, 20, 10]
    a = plot_per_class_accuracy(rng.random(7), counts, tmp_path / "a" / "acc.png", class_names=list("abcdefg"))
    b = plot_per_class_accuracy({"plain": rng.random(7), "oltr": np.r_[rng.random(6), np.nan]}, counts,
                                tmp_path / "acc2.png")
    c = plot_roc({"msp": (rng.normal(size=50), rng.normal(1, size=30)),
                  "reach": (rng.normal(size=50), rng.normal(2, size=30))}, tmp_path / "roc.png")
    d = plot_score_histogram(rng.normal(size=50), rng.normal(1, size=30), tmp_path / "h.png", "msp", threshold=0.3)
    e = plot_score_histogram(np.ones(5), [], tmp_path / "h2.png")  # constant scores, no unknowns
    for p in (a, b, c, d, e):
        assert p.is_file() and _is_png(p)


def test_plot_bad_input(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        plot_per_class_accuracy([0.5, 0.5], [10, 20, 30], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_roc({}, tmp_path / "y.png")
    with pytest.raises(ValueError, match="no scores"):
        plot_score_histogram([], [], tmp_path / "z.png")

"""The comparison table: one row per method, mean ± std over seeds, from the methods' reports."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["CLOSED_COLUMNS", "GROUPS", "format_table", "report_row", "summarise"]

#: (key, header) of the closed-set and open-F columns
CLOSED_COLUMNS = (("top1", "top-1"), ("many", "many"), ("medium", "medium"), ("few", "few"),
                  ("open_f", "open F (val thr.)"))
#: ``all`` = every known test sample; the shot groups use the training counts
GROUPS = ("all", "many", "medium", "few")
_DETECTOR_METRICS = (("auroc", "auroc", "AUROC"), ("fpr95", "fpr_at_tpr", "FPR95"))


def report_row(report: Mapping[str, Any], detectors: Sequence[str]) -> dict[str, float]:
    """The table's values of one report: ``top1``, ``many``, ``medium``, ``few``, ``open_f``
    (``reject.msp.f_measure``) and ``<detector>.<auroc|fpr95>.<all|many|medium|few>`` (NaN for a
    detector the method does not have)."""
    closed = report["closed"]
    row = {k: float(closed[k]) for k in ("top1", "many", "medium", "few")}
    row["open_f"] = float(report["reject"]["msp"]["f_measure"])
    for det in detectors:
        block = report["modern"].get(det)
        for key, field, _ in _DETECTOR_METRICS:
            for group in GROUPS:
                if block is None:
                    value = float("nan")
                else:
                    value = block[field] if group == "all" else block["groups"][group][field]
                row[f"{det}.{key}.{group}"] = float(value)
    return row


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{column: {"mean", "std"}}`` over seeds (std with ddof=1; 0 for one seed; NaN stays NaN)."""
    out = {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(np.mean(values)), "std": std}
    return out


def _cell(stats: Mapping[str, float]) -> str:
    if math.isnan(stats["mean"]):
        return "n/a"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def format_table(title: str, summary: Mapping[str, Mapping[str, Mapping[str, float]]], labels: Mapping[str, str],
                 detectors: Sequence[str], detector_labels: Mapping[str, str], seeds: int, note: str = "") -> str:
    """Markdown: the closed-set / open-F table, the overall AUROC of every detector, then per
    detector AUROC and FPR95 overall and per shot group; ``mean ± std`` in % over ``seeds``
    seeds, one row per method."""
    lines = [f"# {title}: methods compared over {seeds} seed(s)", ""]
    lines.append("| method | " + " | ".join(h for _, h in CLOSED_COLUMNS) + " |")
    lines.append("|---|" + "---|" * len(CLOSED_COLUMNS))
    for method, cols in summary.items():
        lines.append(f"| {labels[method]} | " + " | ".join(_cell(cols[k]) for k, _ in CLOSED_COLUMNS) + " |")
    lines += ["", "AUROC of every detector (larger score = more unknown), all known test images against the "
                  "open set:", ""]
    lines.append("| method | " + " | ".join(detector_labels[d] for d in detectors) + " |")
    lines.append("|---|" + "---|" * len(detectors))
    for method, cols in summary.items():
        lines.append(f"| {labels[method]} | " + " | ".join(_cell(cols[f"{d}.auroc.all"]) for d in detectors) + " |")
    for det in detectors:
        lines += ["", f"**{detector_labels[det]}** (larger = more unknown): AUROC and FPR95 of known test "
                      "images (overall and by shot group) against the open set", ""]
        headers = [f"{name} {group}" for _, _, name in _DETECTOR_METRICS for group in GROUPS]
        lines.append("| method | " + " | ".join(headers) + " |")
        lines.append("|---|" + "---|" * len(headers))
        for method, cols in summary.items():
            cells = [_cell(cols[f"{det}.{key}.{group}"]) for key, _, _ in _DETECTOR_METRICS for group in GROUPS]
            lines.append(f"| {labels[method]} | " + " | ".join(cells) + " |")
    lines += ["", f"Mean ± std over {seeds} seed(s), in %. Top-1 and many / medium / few: closed-set test "
                  "accuracy. Open F: the official open-set F-measure on test ∪ open with the MSP threshold "
                  "that keeps eval.val_keep of the known validation images. τ of logit adjustment and τ-norm "
                  "is chosen on validation (balanced accuracy). n/a: the detector needs what the method lacks "
                  "(ViM / ReAct: a linear head)."]
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"

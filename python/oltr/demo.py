"""``oltr demo``: the plain model against OLTR on the embedded Fashion-MNIST-LT.

For each seed: stage 1 (plain CNN, ``fashion_lt_stage1``), stage 2 (OLTR from that stage 1,
``fashion_lt_stage2``), then both evaluated on test ∪ open. The data split is fixed (the
embedded dataset); a seed changes the initialisation and the sampling. Output folder::

    runs/seed<k>/{stage1,stage2,plain_long}/   checkpoints, logs, eval_test_open.json
    table.md, table.json               mean ± std over seeds (and every seed's values)
    plots/                             per-class accuracy, ROC, score histograms (seed 0)

The official protocol compares a plain model trained for stage 1's epochs with OLTR trained
for stage 1 + stage 2 epochs (docs/official-differences.md D24). The table therefore also has "plain (equal
epochs)": the stage-1 recipe run for as many epochs as both OLTR stages together, its StepLR
step stretched in the same ratio.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from oltr.inference.checkpoint_eval import evaluate_checkpoint
from oltr.inference.report import json_ready
from oltr.train import load_config, train

__all__ = ["COLUMNS", "format_table", "run_demo"]

#: (key, header) of the table's columns, in order.
COLUMNS = (
    ("overall", "overall top-1"),
    ("many", "many"),
    ("medium", "medium"),
    ("few", "few"),
    ("f_measure_val", "open F (val thr.)"),
    ("auroc_msp", "AUROC MSP"),
    ("auroc_reachability", "AUROC reach."),
    ("oscr", "OSCR (MSP)"),
)
_QUICK_EPOCHS = 2
_LONG = "plain (equal epochs)"


def _row(metrics: dict[str, Any]) -> dict[str, float]:
    closed, modern = metrics["closed"], metrics["modern"]
    return {
        "overall": closed["top1"], "many": closed["many"], "medium": closed["medium"], "few": closed["few"],
        "f_measure_val": metrics["reject"]["msp"]["f_measure"],
        "auroc_msp": modern["msp"]["auroc"],
        "auroc_reachability": modern.get("reachability", {}).get("auroc", float("nan")),
        "oscr": modern["msp"]["oscr"],
    }


def _summary(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key, _ in COLUMNS:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        out[key] = {"mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
    return out


def format_table(summary: dict[str, dict[str, dict[str, float]]], seeds: int) -> str:
    """Markdown table: one row per model, ``mean ± std`` in % over ``seeds`` seeds."""
    header = "| model | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [header, "|---|" + "---|" * len(COLUMNS)]
    for model, cols in summary.items():
        cells = [f"{100 * cols[k]['mean']:.1f} ± {100 * cols[k]['std']:.1f}" for k, _ in COLUMNS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Embedded Fashion-MNIST-LT (7 known classes, train 640…10 per class; 3 held-out "
                 f"classes as the open set), mean ± std over {seeds} seed(s), in %. Top-1 and "
                 "many/medium/few are closed-set test accuracy; the F-measure uses the MSP threshold "
                 "that keeps 95 % of known validation images; AUROC and OSCR are threshold-free. "
                 "\"plain\" is stage 1 alone (the official baseline); \"plain (equal epochs)\" is "
                 "stage 1 trained for as many epochs as OLTR's two stages together.")
    return "\n".join(lines) + "\n"


def _plots(out: Path, evaluated: dict[str, tuple[dict, Any, dict]]) -> None:
    from oltr.inference.scores import outlier_scores
    from oltr.metrics.closed import per_class_accuracy
    from oltr.plots import plot_per_class_accuracy, plot_roc, plot_score_histogram

    plots = out / "plots"
    per_class, roc = {}, {}
    counts = class_names = None
    for model_name, (_metrics, outputs, checkpoint) in evaluated.items():
        counts = np.asarray(checkpoint["train_class_counts"])
        class_names = checkpoint["class_names"]
        known = outputs.labels != -1
        preds = outputs.logits.argmax(1)
        per_class[model_name] = per_class_accuracy(preds[known], outputs.labels[known], len(counts))
        scores = outlier_scores(outputs.logits, outputs.reachability)
        for score in ("msp", "reachability"):
            if score in scores:
                roc[f"{model_name} {score}"] = (scores[score][known], scores[score][~known])
                plot_score_histogram(
                    scores[score][known], scores[score][~known],
                    plots / f"hist_{model_name.lower()}_{score}.png", score_name=score,
                    threshold=checkpoint["thresholds"].get(score),
                    title=f"{model_name}: {score} (threshold chosen on val)")
    assert counts is not None, "_run_seed passes the evaluated models of one seed (never none)"
    plot_per_class_accuracy(per_class, counts, plots / "per_class_accuracy.png", class_names=class_names)
    plot_roc(roc, plots / "roc.png")


def _run_seed(out: Path, seed: int, quick: bool, device: str) -> dict[str, dict[str, float]]:
    """Train and evaluate the three models of one seed; returns ``{model: table row}``."""
    started = time.perf_counter()
    run = out / "runs" / f"seed{seed}"
    common = ["progress=false", f"device={device}", f"seed={seed}"] + ([f"epochs={_QUICK_EPOCHS}"] if quick else [])
    stage1 = load_config("fashion_lt_stage1", common + [f"out_dir={run / 'stage1'}"])
    first = train(stage1)
    stage2 = load_config("fashion_lt_stage2", common + [f"out_dir={run / 'stage2'}", f"model.init={first.best_path}"])
    second = train(stage2)
    epochs = stage1["epochs"] + stage2["epochs"]
    step = max(1, round(stage1["optim"]["step_size"] * epochs / stage1["epochs"]))
    long = train(load_config("fashion_lt_stage1", common + [
        f"out_dir={run / 'plain_long'}", f"epochs={epochs}", f"optim.step_size={step}"]))
    rows, evaluated = {}, {}
    for name, result in (("plain", first), (_LONG, long), ("OLTR", second)):
        metrics, outputs, checkpoint = evaluate_checkpoint(
            result.best_path, open_set=True, device=device, return_outputs=True)
        (result.out_dir / "eval_test_open.json").write_text(json.dumps(json_ready(metrics), indent=2, default=str))
        rows[name] = _row(metrics)
        evaluated[name] = (metrics, outputs, checkpoint)
    if seed == 0:
        _plots(out, {k: v for k, v in evaluated.items() if k != _LONG})
    print(f"seed {seed}: top-1 " + ", ".join(f"{k} {v['overall']:.3f}" for k, v in rows.items())
          + f" ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    return rows


def run_demo(out_dir: str | Path = "demo_out", seeds: int = 3, quick: bool = False,
             device: str = "cpu", jobs: int = 1) -> dict[str, Any]:
    """Train and evaluate plain and OLTR models for ``seeds`` seeds; write the table and plots.

    Args:
        out_dir: output folder (created).
        seeds: number of seeds (0, 1, ...).
        quick: 2 epochs per stage (a smoke test; the numbers mean nothing).
        device: ``cpu``, ``cuda`` or ``auto``.
        jobs: seeds trained in parallel processes (each single-threaded, see the configs'
            ``threads``); the results do not depend on it.

    Returns:
        ``{"summary": {model: {column: {mean, std}}}, "per_seed": {...}, "wall_s": float}``;
        the same is written to ``table.json``, the Markdown to ``table.md``.
    """
    if int(seeds) < 1 or int(jobs) < 1:
        raise ValueError(f"seeds and jobs must be >= 1, got {seeds} and {jobs}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if jobs == 1 or seeds == 1:
        per_seed = [_run_seed(out, seed, quick, device) for seed in range(seeds)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(jobs, seeds), mp_context=multiprocessing.get_context("spawn")) as pool:
            per_seed = list(pool.map(_run_seed, [out] * seeds, range(seeds), [quick] * seeds, [device] * seeds))
    rows = {name: [r[name] for r in per_seed] for name in ("plain", _LONG, "OLTR")}
    summary = {name: _summary(model_rows) for name, model_rows in rows.items()}
    table = format_table(summary, seeds)
    wall = time.perf_counter() - started
    result = {"summary": summary, "per_seed": rows, "seeds": seeds, "quick": quick, "jobs": jobs, "wall_s": wall}
    (out / "table.md").write_text(table)
    (out / "table.json").write_text(json.dumps(json_ready(result), indent=2))
    print(table)
    print(f"wrote {out / 'table.md'}, {out / 'table.json'} and {out / 'plots'} in {wall:.0f} s", file=sys.stderr)
    return result

"""``oltr compare``: train what the methods need, evaluate every method on one protocol, write
the table. Per seed (``runs/seed<k>/`` in the output folder)::

    stage1/               the plain model, shared by plain, plain + logit adj., τ-norm, NCM, cRT, LWS
    oltr/                 OLTR from that stage 1 (shared by OLTR and OLTR + logit adj.)
    crt/, lws/            the classifier-only stages on that stage 1's frozen backbone
    plain_equal_epochs/   the stage-1 recipe for stage 1 + OLTR epochs (StepLR step stretched alike)
    balanced_softmax/     the stage-1 recipe with loss.kind balanced_softmax
    reports/<method>.json every method's report (oltr.report/1)

then ``table.md``, ``table.json`` and ``plots/`` in the output folder.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from oltr.compare.spec import DETECTORS, METHODS, CompareSpec

__all__ = ["run_compare"]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class _Trainer:
    """Trains (once) the runs one seed needs."""

    def __init__(self, spec: CompareSpec, seed: int, folder: Path, quick: bool) -> None:
        self.spec, self.folder = spec, folder
        self.common = ["progress=false", f"device={spec.device}", f"seed={seed}"]
        if quick:
            self.common.append(f"epochs={spec.quick_epochs}")
        self.done: dict[str, Path] = {}

    def config(self, recipe: str, extra: list[str]):
        from oltr.train import load_config

        return load_config(self.spec.recipes[recipe], self.common + extra)

    def path(self, key: str, recipe: str, extra: Optional[list[str]] = None) -> Path:
        """``best.pt`` of run ``key`` (the ``recipe`` config with ``extra`` overrides)."""
        from oltr.train import train
        from oltr.train.run_dir import prepare_run_dir

        if key not in self.done:
            started = time.perf_counter()
            config = self.config(recipe, [f"out_dir={self.folder / key}"] + list(extra or []))
            self.check_same_protocol(recipe, config)
            prepare_run_dir(config["out_dir"], overwrite=True)  # a re-run starts afresh (oltr's own files only)
            self.done[key] = train(config).best_path
            _log(f"  trained {key} ({config['epochs']} epochs, {time.perf_counter() - started:.0f} s)")
        return self.done[key]

    def check_same_protocol(self, recipe: str, config) -> None:
        """Every method is evaluated on stage 1's data and shot groups: a recipe whose ``data`` or
        ``eval`` section differs from stage 1's is an error naming it."""
        from oltr.train.config import ConfigError

        first = self.config("stage1", [])
        for section in ("data", "eval"):
            if config[section] != first[section]:
                raise ConfigError(f"compare recipe {recipe} ({self.spec.recipes[recipe]}): its {section!r} section "
                                  f"differs from recipes.stage1's; every method must use the same {section}")

    def stage1(self) -> Path:
        return self.path("stage1", "stage1")

    def after_stage1(self, key: str) -> Path:
        return self.path(key, key, [f"model.init={self.stage1()}"])

    def plain_equal_epochs(self) -> Path:
        first, second = self.config("stage1", []), self.config("oltr", [f"model.init={self.stage1()}"])
        epochs = int(first["epochs"]) + int(second["epochs"])
        step = max(1, round(int(first["optim"]["step_size"]) * epochs / int(first["epochs"])))
        return self.path("plain_equal_epochs", "stage1", [f"epochs={epochs}", f"optim.step_size={step}"])

    def balanced_softmax(self) -> Path:
        return self.path("balanced_softmax", "stage1", ["loss.kind=balanced_softmax"])


def _method_outputs(spec: CompareSpec, trainer: _Trainer) -> tuple[dict[str, Any], Any]:
    """``({method: MethodOutputs}, DataBundle)`` for the spec's methods on one seed."""
    from oltr.compare.methods import checkpoint_outputs, logit_adjusted, ncm_outputs, tau_normalised

    cache: dict[str, Any] = {}
    data = None

    def run_of(key: str, path: Callable[[], Path]):
        nonlocal data
        if key not in cache:
            cache[key], data = checkpoint_outputs(path(), spec.device, data)
        return cache[key]

    trained = {
        "plain": lambda: run_of("stage1", trainer.stage1),
        "plain_equal_epochs": lambda: run_of("plain_equal_epochs", trainer.plain_equal_epochs),
        "balanced_softmax": lambda: run_of("balanced_softmax", trainer.balanced_softmax),
        "crt": lambda: run_of("crt", lambda: trainer.after_stage1("crt")),
        "lws": lambda: run_of("lws", lambda: trainer.after_stage1("lws")),
        "oltr": lambda: run_of("oltr", lambda: trainer.after_stage1("oltr")),
    }
    outputs: dict[str, Any] = {}
    for method in spec.methods:
        if method in trained:
            outputs[method] = trained[method]()
            continue
        base = trained["oltr" if method == "oltr_la" else "plain"]()
        assert data is not None  # set by the run above
        counts = data.train_counts
        if method in ("plain_la", "oltr_la"):
            outputs[method] = logit_adjusted(base, counts)
        elif method == "tau_norm":
            outputs[method] = tau_normalised(base)
        else:
            outputs[method] = ncm_outputs(base)
    return outputs, data


def _run_seed(spec: CompareSpec, seed: int, folder: Path, quick: bool, keep: bool = True) -> dict[str, Any]:
    """Rows (``{method: {column: value}}``) and details of one seed; writes its reports.
    ``keep``: also return the outputs and the data (for the plots)."""
    from oltr.compare.evaluation import fit_detectors, method_report
    from oltr.compare.table import report_row
    from oltr.inference.report import json_ready

    started = time.perf_counter()
    _log(f"seed {seed}:")
    trainer = _Trainer(spec, seed, folder, quick)
    outputs, data = _method_outputs(spec, trainer)
    rows, details, plotted = {}, {}, {}
    reports = folder / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    for method, out in outputs.items():
        detectors = fit_detectors(spec.detectors, out, spec.knn_k, spec.vim_dim)
        eval_cfg = out.loaded.config["eval"]
        report = method_report(out, data.train_counts, eval_cfg, detectors,
                               meta={"method": method, "seed": seed, "checkpoint": str(out.loaded.path)})
        (reports / f"{method}.json").write_text(json.dumps(json_ready(report), indent=2))
        rows[method] = report_row(report, spec.detectors)
        details[method] = dict(out.detail)
        plotted[method] = (out, detectors)
    _log(f"seed {seed}: " + ", ".join(f"{m} {r['top1']:.3f}" for m, r in rows.items())
         + f" top-1 ({time.perf_counter() - started:.0f} s)")
    if not keep:  # a worker process: only what pickles cheaply
        return {"rows": rows, "details": details}
    return {"rows": rows, "details": details, "plotted": plotted, "data": data}


def _plots(out: Path, spec: CompareSpec, seed_result: dict[str, Any]) -> list[Path]:
    """Per-class test accuracy of every method and one ROC figure per detector (first seed)."""
    from oltr.compare.evaluation import method_scores
    from oltr.metrics.closed import per_class_accuracy
    from oltr.plots import plot_per_class_accuracy, plot_roc

    data = seed_result["data"]
    per_class: dict[str, Any] = {}
    rocs: dict[str, dict[str, Any]] = {det: {} for det in spec.detectors}
    for method, (outputs, detectors) in seed_result["plotted"].items():
        label = METHODS[method][0]
        test = outputs.test
        known = test.labels != -1
        per_class[label] = per_class_accuracy(test.logits.argmax(1)[known], test.labels[known], data.num_classes)
        scores = method_scores(test, detectors)
        for det in spec.detectors:
            if det in scores:
                rocs[det][label] = (scores[det][known], scores[det][~known])
    paths = [plot_per_class_accuracy(per_class, list(data.train_counts), out / "plots" / "per_class_accuracy.png",
                                     class_names=data.class_names)]
    for det, curves in rocs.items():
        if curves:
            paths.append(plot_roc(curves, out / "plots" / f"roc_{det}.png",
                                  title=f"{DETECTORS[det]}: known vs unknown ROC (seed {spec.seeds[0]})"))
    return paths


def _all_seeds(spec: CompareSpec, out: Path, quick: bool, jobs: int) -> list[dict[str, Any]]:
    """Every seed's result, the first in this process (its outputs feed the plots), the others
    in up to ``jobs - 1`` worker processes at the same time."""
    folders = [out / "runs" / f"seed{seed}" for seed in spec.seeds]
    if jobs == 1 or len(spec.seeds) == 1:
        return [_run_seed(spec, seed, folder, quick, keep=i == 0)
                for i, (seed, folder) in enumerate(zip(spec.seeds, folders))]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rest = list(zip(spec.seeds[1:], folders[1:]))
    with ProcessPoolExecutor(min(jobs - 1, len(rest)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_seed, spec, seed, folder, quick, False) for seed, folder in rest]
        first = _run_seed(spec, spec.seeds[0], folders[0], quick)
        return [first] + [f.result() for f in futures]


def run_compare(spec: CompareSpec, out_dir: str | Path = "compare_out", quick: bool = False,
                plots: bool = True, jobs: int = 1) -> dict[str, Any]:
    """Run the comparison ``spec`` describes; write ``table.md``, ``table.json``, ``plots/`` and
    every method's report under ``out_dir``; print the table.

    Args:
        spec: :func:`oltr.compare.load_compare_spec`.
        out_dir: output folder (created; earlier runs of the same seeds are overwritten).
        quick: every training runs ``spec.quick_epochs`` epochs (a smoke test; numbers mean little).
        plots: write the plots (first seed).
        jobs: seeds run at the same time (processes; each training uses its config's threads);
            the results do not depend on it.

    Returns:
        ``{"summary": {method: {column: {mean, std}}}, "per_seed": {method: [row, ...]},
        "details": {method: [{"tau": ...}, ...]}, "seeds", "quick", "wall_s", ...}`` — also
        ``table.json``.
    """
    from oltr._platform import cpu_info
    from oltr.compare.table import format_table, summarise
    from oltr.inference.report import json_ready

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if int(jobs) < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    results = _all_seeds(spec, out, quick, int(jobs))
    per_seed = {m: [r["rows"][m] for r in results] for m in spec.methods}
    summary = {m: summarise(rows) for m, rows in per_seed.items()}
    labels = {m: METHODS[m][0] for m in spec.methods}
    wall = time.perf_counter() - started
    note = (f"Data set: {spec.name}; recipes: " + ", ".join(f"{k} = {v}" for k, v in spec.recipes.items())
            + (f"; quick mode ({spec.quick_epochs} epochs per training)" if quick else "")
            + f"; {wall:.0f} s on {cpu_info().label}.")
    table = format_table(spec.name, summary, labels, spec.detectors, DETECTORS, len(spec.seeds), note)
    plot_paths = _plots(out, spec, results[0]) if plots else []
    result = {
        "name": spec.name, "seeds": list(spec.seeds), "quick": quick, "methods": list(spec.methods),
        "labels": labels, "detectors": list(spec.detectors), "recipes": dict(spec.recipes),
        "summary": summary, "per_seed": per_seed,
        "details": {m: [r["details"][m] for r in results] for m in spec.methods},
        "plots": [str(p) for p in plot_paths], "jobs": int(jobs), "wall_s": wall, "cpu": cpu_info().label,
    }
    (out / "table.md").write_text(table, encoding="utf-8")
    (out / "table.json").write_text(json.dumps(json_ready(result), indent=2), encoding="utf-8")
    print(table)
    _log(f"wrote {out / 'table.md'}, {out / 'table.json'}" + (f" and {out / 'plots'}" if plot_paths else "")
         + f" in {wall:.0f} s")
    return result

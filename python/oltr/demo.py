"""``oltr demo`` (``make demo``): the main job — OLTR against the simple long-tail and open-set
baselines on the embedded Fashion-MNIST-LT.

It is ``oltr compare compare_fashion_lt``: for each seed a plain stage-1 model shared by the
methods that only change or post-process its classifier (plain, plain + logit adjustment, τ-norm,
NCM, cRT, LWS), plus plain trained for as many epochs as both OLTR stages together (the
official comparison under-trains the plain model, docs/official-differences.md D24), Balanced
Softmax and OLTR (stage 2 from the shared stage 1; OLTR + logit adjustment reuses its outputs);
detectors MSP, MaxLogit, energy, reachability, KNN and Mahalanobis. Output folder::

    table.md, table.json     mean ± std over seeds (and every seed's values), the CPU it ran on
    plots/                   per-class accuracy, ROC, score histograms (first seed)
    runs/seed<k>/...         checkpoints, logs and every method's report

Runs are deterministic on one machine, not across CPUs (scripts/check_readme_demo.py compares
the README's table for this CPU with ``table.md``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

__all__ = ["DEMO_COMPARE", "run_demo"]

#: the shipped compare config the demo runs
DEMO_COMPARE = "compare_fashion_lt"


def run_demo(out_dir: str | Path = "demo_out", seeds: int = 3, quick: bool = False,
             device: str = "cpu", jobs: int = 1) -> dict[str, Any]:
    """Run the demo comparison for seeds ``0 .. seeds-1``; write ``table.md``, ``table.json``
    and ``plots/`` into ``out_dir`` and print the table.

    Args:
        out_dir: output folder (created).
        seeds: number of seeds (0, 1, ...).
        quick: every training runs 2 epochs (a smoke test; the numbers mean nothing).
        device: ``cpu``, ``cuda`` or ``auto``.
        jobs: seeds trained in parallel processes; the results do not depend on it.

    Returns:
        :func:`oltr.compare.run_compare`'s result (also ``table.json``).
    """
    from oltr.compare import load_compare_spec, run_compare

    if int(seeds) < 1 or int(jobs) < 1:
        raise ValueError(f"seeds and jobs must be >= 1, got {seeds} and {jobs}")
    spec = dataclasses.replace(load_compare_spec(DEMO_COMPARE), seeds=tuple(range(int(seeds))), device=device)
    return run_compare(spec, out_dir, quick=quick, plots=True, jobs=int(jobs))

"""``oltr compare``: OLTR and the simple long-tail / open-set baselines on one protocol.

* :func:`load_compare_spec` reads a compare YAML (:mod:`oltr.compare.spec`: data set recipes,
  seeds, methods, detectors); :func:`shipped_compare_configs` lists the shipped ones.
* :func:`run_compare` trains what the methods need — one stage-1 model per seed shared by the
  methods that only change its classifier or post-process it (plain, + logit adjustment, τ-norm,
  NCM, cRT, LWS), and the others (plain for equal epochs, Balanced Softmax, OLTR, whose outputs
  OLTR + logit adjustment shares) — and writes one table (methods × closed top-1 overall / many /
  medium / few, open F at a validation threshold, AUROC / FPR95 of every detector overall and per
  shot group; mean ± std over seeds).

Every number comes from the one inference path (:mod:`oltr.inference`) and the one report
(:func:`oltr.metrics.evaluate`, ``oltr.report/1``).
"""
from __future__ import annotations

from oltr.compare.run import run_compare
from oltr.compare.spec import (
    DETECTORS,
    METHODS,
    CompareSpec,
    compare_spec,
    load_compare_spec,
    shipped_compare_configs,
)

__all__ = ["DETECTORS", "METHODS", "CompareSpec", "compare_spec", "load_compare_spec", "run_compare",
           "shipped_compare_configs"]

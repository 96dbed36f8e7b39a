"""``oltr demo --quick``: the demo is the shipped Fashion-MNIST-LT comparison; its table
(Markdown + JSON), the CPU it ran on and the plots are written."""
from __future__ import annotations

import json

from oltr._platform import cpu_info
from oltr.compare import load_compare_spec
from oltr.demo import DEMO_COMPARE, run_demo


def test_quick_demo_writes_the_comparison_table_and_plots(tmp_path, capsys):
    result = run_demo(tmp_path, seeds=1, quick=True, device="cpu")
    spec = load_compare_spec(DEMO_COMPARE)
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["seeds"] == [0] and saved["quick"] is True and saved["cpu"] == cpu_info().label
    assert saved["methods"] == list(spec.methods) and saved["detectors"] == list(spec.detectors)
    for method in ("plain", "plain_la", "crt", "balanced_softmax", "oltr"):
        (row,) = saved["per_seed"][method]
        assert saved["summary"][method]["top1"] == {"mean": row["top1"], "std": 0.0}
    for det in ("msp", "max_logit", "energy", "reachability", "knn", "mahalanobis"):
        assert 0.0 <= saved["summary"]["oltr"][f"{det}.auroc.all"]["mean"] <= 1.0
    assert result["summary"] == saved["summary"]
    table = (tmp_path / "table.md").read_text()
    assert table in capsys.readouterr().out and cpu_info().label in table
    first, second = table.split("\n\n| method")[1:3]
    assert first.count("\n| ") == len(spec.methods) and "± " in first  # one row per method
    assert all(saved["labels"][m] in second for m in spec.methods)  # the AUROC-by-detector table
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert any(name.startswith("roc") for name in plots) and plots

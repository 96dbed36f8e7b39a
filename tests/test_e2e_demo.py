"""``oltr demo --quick``: the table (Markdown + JSON) and the plots are written."""
from __future__ import annotations

import json

import numpy as np

from oltr.demo import COLUMNS, _summary, format_table, run_demo


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = [{key: 0.1 * (i + 1) + j for j, (key, _) in enumerate(COLUMNS)} for i in range(3)]
    summary = _summary(rows)
    for j, (key, _) in enumerate(COLUMNS):
        values = np.array([0.1, 0.2, 0.3]) + j
        assert np.isclose(summary[key]["mean"], values.mean())
        assert np.isclose(summary[key]["std"], values.std(ddof=1))
    assert "| m | 20.0 ± 10.0 |" in format_table({"m": summary}, 3)


def test_quick_demo_writes_table_and_plots(tmp_path, capsys):
    result = run_demo(tmp_path, seeds=1, quick=True, device="cpu")
    saved = json.loads((tmp_path / "table.json").read_text())
    assert saved["seeds"] == 1 and saved["quick"] is True
    for model in ("plain", "plain (equal epochs)", "OLTR"):
        (row,) = saved["per_seed"][model]
        for key, _ in COLUMNS:
            assert saved["summary"][model][key] == {"mean": row[key], "std": 0.0}
    assert result["summary"] == saved["summary"]
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n| ") == 3 and "± " in table and table in capsys.readouterr().out
    epochs = [json.loads(x) for x in (tmp_path / "runs/seed0/stage2/log.jsonl").read_text().splitlines()
              if '"event": "epoch"' in x]
    assert len(epochs) == 2
    plots = {p.name for p in (tmp_path / "plots").iterdir()}
    assert {"per_class_accuracy.png", "roc.png", "hist_oltr_reachability.png", "hist_plain_msp.png"} <= plots

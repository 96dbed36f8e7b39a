"""scripts/enroll_eval.py: the enrollment pool is disjoint from the scored images, and the
evaluation runs end to end on a (barely) trained Fashion-MNIST-LT model."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from oltr.datasets.fashion import FASHION_LT_PATH

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "enroll_eval.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("enroll_eval", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pool_and_evaluation_images_are_disjoint_halves_of_one_class(script):
    source = np.load(FASHION_LT_PATH)["open_source_labels"]
    rows = torch.arange(source.shape[0]).unsqueeze(1)  # "features" = row numbers
    for seed in range(3):
        rng = np.random.default_rng(seed)
        for name, label in script.NEW.items():
            pool, scored = script._split(rng, rows, source, name)
            pool, scored = set(pool[:, 0].tolist()), set(scored[:, 0].tolist())
            assert len(pool) == script.POOL == 100 and len(scored) == 100 and not pool & scored
            assert pool | scored == set(np.flatnonzero(source == label).tolist())


def test_the_evaluation_runs_on_a_small_model(script, tmp_path):
    from oltr.train import load_config, train

    config = ["progress=false", "device=cpu", "epochs=1"]
    first = train(load_config("fashion_lt_stage1", [*config, f"out_dir={tmp_path / 's1'}"]))
    second = train(load_config("fashion_lt_stage2", [*config, f"out_dir={tmp_path / 's2'}",
                                                     f"model.init={first.best_path}"]))

    class Args:
        stage2, seeds, shots, epochs = second.best_path, 2, [1, 3], 1

    results = script.run(Args)
    assert set(results["rows"]) == {(m, n) for m in ("enroll (mean)", "enroll (calibrated)", "NCM", "retrain head")
                                    for n in (1, 3)}
    for rows in results["rows"].values():
        assert len(rows) == 2 and all(0.0 <= v <= 1.0 for row in rows for v in row)
    assert set(results["unknown"]) == {(name, n) for name in script.NEW for n in (1, 3)}
    text = script.table(results, Args)
    assert "| enroll (calibrated) | 3 |" in text and "| Bag | 1 |" in text

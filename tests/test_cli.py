"""The ``oltr`` command: a working run, and one-line errors with a non-zero status."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from oltr.cli import main

REPO = Path(__file__).resolve().parents[1]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("oltr: error: ")
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    rc = main(["train", "digits_lt_stage1", "--out", str(out), "--device", "cpu",
               "--set", "epochs=1", "--set", "progress=false"])
    assert rc == 0
    return out


def test_train_eval_predict_commands(trained, tmp_path, capsys):
    best = trained / "best.pt"
    assert best.is_file()
    capsys.readouterr()
    assert main(["eval", str(best), "--open", "--json", str(tmp_path / "m.json"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "closed set" in printed and "reachability" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_unknown"] == 160 and metrics["schema"] == "oltr.report/1" and "msp" in metrics["reject"]
    np.save(tmp_path / "f.npy", np.zeros((3, 64), np.float32))
    assert main(["predict", str(best), str(tmp_path / "f.npy"), "-o", str(tmp_path / "p.jsonl")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and {"label", "unknown", "scores"} <= set(lines[0])
    assert main(["configs"]) == 0 and "fashion_lt_stage1" in capsys.readouterr().out.split()


@pytest.mark.parametrize("argv, match", [
    (["train", "no/such/config.yaml"], "config file not found"),
    (["train", "digits_lt_stage1", "--set", "optim.bogus=1"], "unknown config key 'optim.bogus'"),
    (["train", "digits_lt_stage1", "--set", "epochs"], "expects key=value"),
    (["eval", "no/such/best.pt"], "checkpoint not found"),
    (["predict", "no/such/best.pt", "x.png"], "input not found"),
    (["demo", "--seeds", "0"], "--seeds must be >= 1"),
])
def test_errors_are_one_line(argv, match, capsys):
    assert main(argv) == 1
    assert match in _error_line(capsys)


def test_corrupt_checkpoint_and_bad_inputs(trained, tmp_path, capsys):
    corrupt = tmp_path / "best.pt"
    corrupt.write_bytes((trained / "best.pt").read_bytes()[:200])
    assert main(["eval", str(corrupt)]) == 1
    assert "corrupt" in _error_line(capsys)
    assert main(["eval", str(trained / "last.pt")]) == 1
    assert "pass best.pt, not last.pt" in _error_line(capsys)
    assert main(["predict", str(trained / "best.pt"), str(tmp_path / "nothing.npy")]) == 1
    assert "input not found" in _error_line(capsys)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 7), np.float32))
    assert main(["predict", str(trained / "best.pt"), str(tmp_path / "wrong.npy")]) == 1
    assert "expected features" in _error_line(capsys)


def test_usage_error_exit_code(capsys):
    assert main([]) == 2
    assert main(["train", "x", "--device", "tpu"]) == 2
    assert main(["bench", "--no-such-option"]) == 2  # options pass through to oltr.memory.bench
    assert "--no-such-option" in capsys.readouterr().err


def test_python_dash_m_exit_status(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "python") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("OLTR_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "oltr", "eval", str(tmp_path / "missing.pt")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("oltr: error:") and "Traceback" not in proc.stderr

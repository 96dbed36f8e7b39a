"""--resume continues a killed run to exactly the uninterrupted run's result."""
from __future__ import annotations

import pytest
import torch

from oltr.train import ConfigError, load_config, load_resume_state, train
from oltr.train.trainer import _Run


def _config(name, out, *extra):
    return load_config(name, ["progress=false", "device=cpu", f"out_dir={out}", *extra])


def _assert_same_state(a, b):
    for key in ("model", "criterion"):
        if key in a:
            assert a[key].keys() == b[key].keys()
            for name in a[key]:
                assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    for key in ("model_optimizer", "criterion_optimizer"):
        if key in a:
            for idx, state in a[key]["state"].items():
                assert torch.equal(state["momentum_buffer"], b[key]["state"][idx]["momentum_buffer"])
    assert a["model_scheduler"] == b["model_scheduler"]
    assert a["epoch"] == b["epoch"] and a["best"]["epoch"] == b["best"]["epoch"]
    assert a["best"]["acc"] == b["best"]["acc"]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return train(_config("digits_lt_stage1", root / "s1", "epochs=1", "optim.step_size=1"))


def test_stage1_resume_equals_uninterrupted(tmp_path):
    straight = train(_config("digits_lt_stage1", tmp_path / "a", "epochs=2", "optim.step_size=1"))
    train(_config("digits_lt_stage1", tmp_path / "b", "epochs=1", "optim.step_size=1"))
    resumed = train(_config("digits_lt_stage1", tmp_path / "b", "epochs=2", "optim.step_size=1"), resume=True)
    assert resumed.epochs_run == 1 and straight.epochs_run == 2
    _assert_same_state(load_resume_state(straight.out_dir / "last.pt"), load_resume_state(resumed.out_dir / "last.pt"))
    assert load_resume_state(resumed.out_dir / "last.pt")["model_scheduler"]["last_epoch"] == 2


def test_stage2_killed_mid_epoch_resumes_to_the_same_weights(stage1, tmp_path, monkeypatch):
    extra = ("epochs=3", f"model.init={stage1.best_path}", "centroids.step_size=1")
    straight = train(_config("digits_lt_stage2", tmp_path / "a", *extra))

    calls = {"n": 0}
    original = _Run.validate

    def dying_validate(self):
        calls["n"] += 1
        if calls["n"] == 2:  # killed during epoch 2, after its training steps
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(_Run, "validate", dying_validate)
    with pytest.raises(KeyboardInterrupt):
        train(_config("digits_lt_stage2", tmp_path / "b", *extra))
    monkeypatch.setattr(_Run, "validate", original)
    assert load_resume_state(tmp_path / "b" / "last.pt")["epoch"] == 1
    resumed = train(_config("digits_lt_stage2", tmp_path / "b", *extra), resume=True)
    assert resumed.epochs_run == 2
    a = load_resume_state(straight.out_dir / "last.pt")
    b = load_resume_state(resumed.out_dir / "last.pt")
    _assert_same_state(a, b)
    assert torch.equal(a["criterion"]["centroids"], b["criterion"]["centroids"])
    assert resumed.best_acc == straight.best_acc and resumed.best_epoch == straight.best_epoch


def test_resume_refuses_a_different_config(stage1, tmp_path):
    train(_config("digits_lt_stage1", tmp_path, "epochs=1"))
    saved = (tmp_path / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"config differs .* \['optim'\]"):
        train(_config("digits_lt_stage1", tmp_path, "epochs=2", "optim.feat_lr=0.5"), resume=True)
    assert (tmp_path / "config.yaml").read_text() == saved  # the refused config is not recorded


def test_resume_without_a_previous_run_starts_from_scratch(tmp_path):
    result = train(_config("digits_lt_stage1", tmp_path, "epochs=1"), resume=True)
    assert result.epochs_run == 1
    assert "nothing to resume" in (tmp_path / "log.jsonl").read_text()


def test_resume_removes_temp_files_of_a_killed_write(tmp_path):
    first = train(_config("digits_lt_stage1", tmp_path, "epochs=1"))
    stale = [tmp_path / ".best.pt.x8f2k1.tmp", tmp_path / ".last.pt.q0z9m3.tmp"]
    for path in stale:  # a kill during the atomic write leaves these behind
        path.write_bytes(b"PK\x03\x04 half a checkpoint")
    result = train(_config("digits_lt_stage1", tmp_path, "epochs=1"), resume=True)
    assert result.epochs_run == 0 and result.best_acc == first.best_acc
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".pt", ".tmp"))) == ["best.pt", "last.pt"]

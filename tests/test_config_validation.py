"""Config values out of range are errors naming the key and the file; a checkpoint's stored
config is checked again when it is loaded (resource settings bounded to this machine)."""
from __future__ import annotations

import re
import warnings

import pytest
import torch
import yaml

from oltr.train import ConfigError, build_model, load_config, load_trained_model, train
from oltr.train.checkpoints import MODEL_FORMAT, load_model_checkpoint, save_checkpoint
from oltr.train.config import resource_limit, stored_config

_NAN, _INF = float("nan"), float("inf")
_LIMIT = resource_limit()

_BAD = [
    # key, bad values, what the message says
    ("optim.gamma", [-0.1, -1e-9, 0.0, 1.5, _NAN, _INF, -_INF], r"must be in \(0, 1\]"),
    ("centroids.gamma", [-0.5, 0.0, 2.0, _NAN], r"must be in \(0, 1\]"),
    ("optim.feat_lr", [0.0, -0.1, -1e30, _NAN, _INF], r"must be > 0"),
    ("optim.classifier_lr", [0.0, -1.0, _NAN], r"must be > 0"),
    ("centroids.lr", [0.0, -0.01, _NAN, _INF], r"must be > 0"),
    ("optim.momentum", [-0.1, 1.0, _NAN], r"must be in \[0, 1\)"),
    ("optim.weight_decay", [-5e-4, _NAN], r"must be >= 0"),
    ("eval.open_threshold", [_NAN, _INF, -_INF, -0.1, 1.01], r"must be in \[0, 1\]"),
    ("eval.val_keep", [0.0, -0.5, 1.5, _NAN, _INF], r"must be in \(0, 1\]"),
    ("loss.centroid_weight", [-0.01, _NAN], r"must be >= 0"),
    ("centroids.repel_margin", [-1.0, _INF], r"must be >= 0"),
    ("batch_size", [0, -1, -128], r"must be >= 1"),
    ("eval.batch_size", [0, -3], r"must be >= 1"),
    ("epochs", [0, -1, -10**9], r"must be >= 1"),
    ("optim.step_size", [0, -2], r"must be >= 1"),
    ("centroids.step_size", [0, -1], r"must be >= 1"),
    ("steps_per_epoch", [0, -1], r"must be >= 1"),
    ("num_workers", [-1, _LIMIT + 1, 64 * _LIMIT, 10**9], r"must be in \[0, max\(8, 2 × CPU count\)\]"),
    ("threads", [0, -1, _LIMIT + 1, 4096], r"must be in \[1, max\(8, 2 × CPU count\)\]"),
    ("seed", [-1, 2**63], r"must be in \[0, 2\^63 - 1\]"),
    ("model.num_classes", [0, -5], r"must be >= 1"),
    ("data.image_size", [0], r"must be >= 1"),
]
_CASES = [(key, value, msg) for key, values, msg in _BAD for value in values]


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("key, value, message", _CASES)
def test_bad_values_from_set_name_the_key(key, value, message):
    with pytest.raises(ConfigError, match=rf"^--set: config key '{re.escape(key)}' {message}; got "):
        load_config("digits_lt_stage2", [f"{key}={_text(value)}"])


@pytest.mark.parametrize("key, value, message", _CASES[::3])
def test_bad_values_in_a_file_name_the_key_and_the_file(key, value, message, tmp_path):
    *sections, leaf = key.split(".")
    tree = {leaf: value}
    for section in reversed(sections):
        tree = {section: tree}
    path = tmp_path / "bad.yaml"
    path.write_text("base: digits_lt_stage2\n" + yaml.safe_dump(tree))  # nan/inf as .nan/.inf
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: config key '{re.escape(key)}' {message}"):
        load_config(path)


@pytest.mark.parametrize("override", [
    "optim.gamma=1", "optim.gamma=1e-6", "eval.open_threshold=0", "eval.open_threshold=1", "eval.val_keep=1",
    "optim.momentum=0", "optim.weight_decay=0", f"num_workers={_LIMIT}", "num_workers=0", f"threads={_LIMIT}",
    "threads=1", "loss.centroid_weight=0", "seed=0", f"seed={2**63 - 1}",
])
def test_values_on_the_bounds_are_accepted(override):
    load_config("digits_lt_stage2", [override])


def test_few_shot_must_be_below_many_shot():
    with pytest.raises(ConfigError, match="'eval.few_shot' must be below eval.many_shot \\(20\\); got 20"):
        load_config("digits_lt_stage1", ["eval.many_shot=20"])
    assert load_config("digits_lt_stage1", ["eval.many_shot=21"]).eval.many_shot == 21


def test_the_resource_bound_follows_the_cpu_count(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    assert resource_limit() == 64
    load_config("digits_lt_stage1", ["num_workers=64"])
    with pytest.raises(ConfigError, match="'num_workers'"):
        load_config("digits_lt_stage1", ["num_workers=65"])
    monkeypatch.setattr("os.cpu_count", lambda: None)
    assert resource_limit() == 8


# -- a checkpoint's stored config ---------------------------------------------------------------

def _checkpoint(path, **changes):
    """A model checkpoint of a fresh digits model whose stored config has ``changes``."""
    config = load_config("digits_lt_stage1", ["device=cpu"])
    stored = config.to_dict()
    for dotted, value in changes.items():
        *sections, leaf = dotted.split("__")
        node = stored
        for section in sections:
            node = node[section]
        node[leaf] = value
    model = build_model(config)
    save_checkpoint({
        "format": MODEL_FORMAT, "config": stored, "class_names": [str(k) for k in range(6)],
        "train_class_counts": [10] * 6, "state_dict": model.state_dict(), "centroids": None,
        "epoch": 1, "best_acc": 0.5, "thresholds": {"open_threshold": 0.1}, "complete": False,
    }, path)
    return path


def test_a_stored_config_above_the_resource_bound_is_bounded_at_load(tmp_path):
    path = _checkpoint(tmp_path / "best.pt", num_workers=64 * _LIMIT, threads=10**6)
    with pytest.warns(UserWarning) as record:
        _, checkpoint = load_trained_model(path)
    messages = sorted(str(w.message) for w in record)
    bound = f"above this machine's bound {_LIMIT} (max(8, 2 x CPU count)); using {_LIMIT}"
    assert messages == [f"{path}: config key 'num_workers' is {64 * _LIMIT}, {bound}",
                        f"{path}: config key 'threads' is {10**6}, {bound}"]
    assert checkpoint["config"]["num_workers"] == _LIMIT and checkpoint["config"]["threads"] == _LIMIT
    assert type(checkpoint["config"]) is dict


@pytest.mark.parametrize("change, key", [
    ({"optim__gamma": -0.1}, "optim.gamma"),
    ({"optim__gamma": _NAN}, "optim.gamma"),
    ({"eval__open_threshold": _NAN}, "eval.open_threshold"),
    ({"eval__val_keep": 0.0}, "eval.val_keep"),
    ({"num_workers": -1}, "num_workers"),
    ({"batch_size": "8"}, "batch_size"),
    ({"optim__nope": 1}, "optim.nope"),
])
def test_a_bad_stored_config_is_an_error_naming_the_checkpoint_and_key(tmp_path, change, key):
    path = _checkpoint(tmp_path / "best.pt", **change)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: .*'{re.escape(key)}'"):
        load_trained_model(path)


def test_a_stored_config_of_an_earlier_version_loads(tmp_path, monkeypatch):
    """Configs stored before the typed config: relative paths, explicit centroid schedule."""
    monkeypatch.chdir(tmp_path)
    old = load_config("digits_lt_stage2").to_dict()
    old.update(out_dir="runs/digits_lt/stage2")
    old["model"]["init"] = "runs/digits_lt/stage1/best.pt"
    old["centroids"].update(step_size=5, gamma=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = stored_config(old, "old.pt")
    assert config.out_dir == str(tmp_path / "runs" / "digits_lt" / "stage2")
    assert config.centroid_schedule == (5, 0.1)
    with pytest.raises(ConfigError, match="^old.pt: the stored config must be a mapping"):
        stored_config(["not", "a", "mapping"], "old.pt")


def test_training_stores_the_plain_validated_config(tmp_path):
    config = load_config("digits_lt_stage1", ["progress=false", "epochs=1", "steps_per_epoch=1",
                                              f"out_dir={tmp_path}"])
    assert config.device == "auto"
    result = train(config, device="cpu")  # the device argument overrides the (frozen) config's
    stored = load_model_checkpoint(result.best_path)["config"]
    assert type(stored) is dict and stored == {**config.to_dict(), "device": "cpu"}
    recorded = load_config(tmp_path / "config.yaml")  # the run's config.yaml loads back to the same config
    assert recorded == stored and config.device == "auto"
    _, checkpoint = load_trained_model(result.best_path)
    assert checkpoint["config"] == stored
    assert torch.load(result.best_path, weights_only=True)["config"] == stored

"""Training configs: every shipped YAML parses and builds its model; --set overrides."""
from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Mapping

import pytest
import yaml

import oltr.train
from oltr.nn import DiscCentroidsLoss
from oltr.train import (
    ConfigError,
    apply_overrides,
    build_model,
    load_config,
    parse_value,
    shipped_configs,
)
from oltr.train.config import DEFAULTS, Config, OptimConfig, config_from_dict
from oltr.train.trainer import build_optimizers

_OFFICIAL = {
    # name: (stage, backbone, K, feat lr, classifier lr, epochs, step, sampler, fix)
    "imagenet_lt_stage1": ("plain", "resnet10", 1000, 0.1, 0.1, 30, 10, "shuffle", False),
    "imagenet_lt_stage2": ("oltr", "resnet10", 1000, 0.01, 0.1, 60, 20, "class_aware", False),
    "places_lt_stage1": ("plain", "resnet152", 365, 0.001, 0.1, 30, 10, "shuffle", False),
    "places_lt_stage2": ("oltr", "resnet152", 365, 0.0001, 0.01, 30, 10, "class_aware", True),
}


def test_shipped_configs_include_official_and_demo_recipes():
    names = set(shipped_configs())
    assert set(_OFFICIAL) <= names
    assert {"fashion_lt_stage1", "fashion_lt_stage2", "digits_lt_stage1", "digits_lt_stage2"} <= names


@pytest.mark.parametrize("name", sorted(_OFFICIAL))
def test_official_recipe_values(name):
    stage, backbone, k, feat_lr, cls_lr, epochs, step, sampler, fix = _OFFICIAL[name]
    c = load_config(name)
    assert (c["stage"], c["model"]["backbone"], c["model"]["num_classes"]) == (stage, backbone, k)
    assert (c["optim"]["feat_lr"], c["optim"]["classifier_lr"]) == (feat_lr, cls_lr)
    assert (c["epochs"], c["optim"]["step_size"], c["batch_size"]) == (epochs, step, 128)
    assert (c["optim"]["momentum"], c["optim"]["weight_decay"], c["optim"]["gamma"]) == (0.9, 5e-4, 0.1)
    assert c["sampler"]["kind"] == sampler and c["sampler"]["samples_per_class"] == 4
    assert c["model"]["fix_backbone"] is fix
    assert c["eval"]["open_threshold"] == 0.1
    if stage == "oltr":
        assert c["centroids"]["lr"] == 0.01 and c["loss"]["centroid_weight"] == 0.01
        assert (c["centroids"]["repel_margin"], c["centroids"]["repel_weight"]) == (10.0, 0.01)
        assert c["model"]["init"].endswith("stage1/best.pt")


@pytest.mark.parametrize("name", ["imagenet_lt_stage1", "imagenet_lt_stage2", "places_lt_stage2",
                                  "fashion_lt_stage2", "digits_lt_stage1"])
def test_shipped_config_builds_its_model(name):
    c = load_config(name)
    model = build_model(c)
    assert model.stage == c["stage"] and model.num_classes == c["model"]["num_classes"]
    keys = model.state_dict().keys()
    has_attention = any("modulatedatt" in k for k in keys)
    assert has_attention == (c["stage"] == "oltr")
    if name == "imagenet_lt_stage2":  # official key layout: fc_add 512x512, fc_spatial 49x25088
        state = model.state_dict()
        assert tuple(state["feat_model.fc_add.weight"].shape) == (512, 512)
        assert tuple(state["feat_model.modulatedatt.fc_spatial.weight"].shape) == (49, 25088)


def test_optimizers_follow_the_official_recipe_and_fix_freezes_the_backbone():
    c = load_config("digits_lt_stage2", ["model.fix_backbone=true", "optim.feat_lr=0.02"])
    model = build_model(c)
    model.freeze_backbone()
    criterion = DiscCentroidsLoss(6, model.feat_dim)
    opt, sched, copt, csched = build_optimizers(c, model, criterion)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.1]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 5e-4 for g in opt.param_groups)
    assert copt.param_groups[0]["params"][0] is criterion.centroids and copt.param_groups[0]["lr"] == 0.01
    assert sched.step_size == 5 and csched.step_size == 5
    trainable = {n for n, p in model.feat_model.named_parameters() if p.requires_grad}
    assert trainable and all("modulatedatt" in n or "fc" in n for n in trainable)
    assert all(p.requires_grad for p in model.classifier.parameters())


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0.1", 0.1), ("5e-4", 5e-4), ("true", True), ("False", False), ("null", None),
    ("none", None), ("[1, 2]", [1, 2]), ("resnet10", "resnet10"), ("a=b", "a=b"),
])
def test_parse_value_types(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_overrides_nested_typed_and_int_to_float():
    c = load_config("digits_lt_stage1", ["optim.feat_lr=1", "epochs=4", "model.fix_backbone=yes",
                                         "data.root=/x", "optim.weight_decay=5e-4"])
    assert c["optim"]["feat_lr"] == 1.0 and isinstance(c["optim"]["feat_lr"], float)
    assert c["epochs"] == 4 and c["model"]["fix_backbone"] is True and c["data"]["root"] == "/x"
    assert c["optim"]["weight_decay"] == 5e-4
    assert apply_overrides(c, ["data.transform=none"])["data"]["transform"] == "none"  # a word, not null
    assert apply_overrides(c, ["model.init=null"])["model"]["init"] is None
    again = apply_overrides(c, ["epochs=5"])
    assert again["epochs"] == 5 and c["epochs"] == 4  # no mutation


@pytest.mark.parametrize("override, match", [
    ("optim.nope=1", "unknown config key 'optim.nope'"),
    ("bogus=1", "unknown config key 'bogus'"),
    ("epochs=abc", "'epochs' must be an integer"),
    ("epochs=0", "--set: config key 'epochs' must be >= 1; got 0"),
    ("epochs=null", "'epochs' must be an integer \\(int\\); got null"),
    ("optim.gamma=abc", "'optim.gamma' must be a number \\(float\\); got 'abc'"),
    ("epochs.x=1", "'epochs' must be an integer"),
    ("stage=stage3", "'stage' must be one of plain, oltr"),
    ("optim=3", "'optim' must be a mapping"),
    ("epochs", "expects key=value"),
    ("=3", "expects key=value"),
    ("model.fix_backbone=2", "must be true or false"),
    ("base=fashion_lt_stage1", "unknown config key 'base'"),
])
def test_bad_overrides_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config("digits_lt_stage1", [override])


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  backbone: cnn8\n  widht: 3\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.widht'"):
        load_config(unknown)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(listed)


def test_defaults_are_the_official_imagenet_stage1_recipe():
    assert DEFAULTS["optim"] == {"feat_lr": 0.1, "classifier_lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                                 "schedule": "step", "step_size": 10, "gamma": 0.1, "end_lr": 0.0}
    assert DEFAULTS["loss"] == {"kind": "ce", "tau": 1.0, "ce_weight": 1.0, "centroid_weight": 0.01}
    assert DEFAULTS["sampler"]["samples_per_class"] == 4 and DEFAULTS["batch_size"] == 128


# -- the typed config -------------------------------------------------------------------------

def test_config_is_typed_frozen_and_a_read_only_mapping():
    c = load_config("digits_lt_stage2")
    assert oltr.train.Config is Config
    assert isinstance(c, Config) and isinstance(c, Mapping) and isinstance(c.optim, OptimConfig)
    assert c.optim.gamma == c["optim"]["gamma"] == 0.1 and c.eval.open_threshold == c["eval"]["open_threshold"]
    assert list(c.keys())[:3] == ["name", "stage", "seed"] and "optim" in c and "nope" not in c
    assert c.get("nope", 7) == 7 and c["data"].get("source") == "digits_lt"
    with pytest.raises(KeyError):
        c["nope"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.epochs = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optim.gamma = 0.5
    with pytest.raises(TypeError):
        c["epochs"] = 3
    with pytest.raises(TypeError):
        c.model.options["width"] = 3


def test_to_dict_is_plain_equal_and_round_trips():
    c = load_config("digits_lt_stage2", ["model.options={width: 2, sizes: [1, 2]}"])
    d = c.to_dict()
    assert type(d) is dict and type(d["optim"]) is dict and type(d["model"]["options"]) is dict
    assert d["model"]["options"] == {"width": 2, "sizes": [1, 2]}
    assert c == d and d == c and c != {**d, "epochs": 99}
    assert yaml.safe_load(yaml.safe_dump(d)) == d and json.loads(json.dumps(d)) == d
    d["optim"]["gamma"] = 0.5  # a copy: the config does not change
    assert c.optim.gamma == 0.1
    assert pickle.loads(pickle.dumps(c)) == c and copy.deepcopy(c) == c
    assert config_from_dict(c.to_dict()) == c


def test_constructing_or_replacing_checks_values():
    with pytest.raises(ConfigError, match="config key 'epochs' must be >= 1; got 0"):
        Config(epochs=0)
    c = load_config("digits_lt_stage1")
    with pytest.raises(ConfigError, match="'optim.gamma' must be in \\(0, 1\\]; got -0.1"):
        dataclasses.replace(c, optim=dataclasses.replace(c.optim, gamma=-0.1))
    with pytest.raises(ConfigError, match="'batch_size' must be int; got '8'"):
        dataclasses.replace(c, batch_size="8")
    assert dataclasses.replace(c, epochs=3).epochs == 3


def test_defaults_come_from_the_dataclasses():
    assert DEFAULTS == Config().to_dict()
    DEFAULTS["epochs"] = -1  # a copy: changing it changes nothing
    try:
        assert load_config("digits_lt_stage1").epochs == 10 and Config().epochs == 30
    finally:
        DEFAULTS["epochs"] = 30


@pytest.mark.parametrize("override, key, value", [
    ("name=123", "name", "123"),                       # a string field keeps the text
    ("data.transform=none", ("data", "transform"), "none"),
    ("model.init=none", ("model", "init"), None),      # a nullable field: null
    ("threads=null", "threads", None),
    ("threads=2", "threads", 2),
    ("optim.gamma=1", ("optim", "gamma"), 1.0),        # int -> float
    ("eval.open_threshold=5e-1", ("eval", "open_threshold"), 0.5),
])
def test_overrides_are_typed_by_the_field(override, key, value):
    c = load_config("digits_lt_stage1", [override])
    got = c[key] if isinstance(key, str) else c[key[0]][key[1]]
    assert got == value and type(got) is type(value)


def test_override_into_a_free_mapping_merges_key_by_key():
    c = load_config("digits_lt_stage1", ["model.options.width=3", "model.options.name=x"])
    assert dict(c.model.options) == {"width": 3, "name": "x"}


def test_apply_overrides_takes_a_plain_dict_and_errors_name_the_source(tmp_path):
    c = apply_overrides(DEFAULTS, ["epochs=4"])
    assert isinstance(c, Config) and c.epochs == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  gamma: -0.5\n")
    with pytest.raises(ConfigError, match=f"{bad}: config key 'optim.gamma' must be in"):
        load_config(bad)
    fixed = load_config(bad, ["optim.gamma=0.5"])  # a later layer may fix a value
    assert fixed.optim.gamma == 0.5
    with pytest.raises(ConfigError, match="--set: config key 'optim.gamma' must be in"):
        apply_overrides(fixed, ["optim.gamma=-2"])
    # an override elsewhere: the error still names the file that set the bad value
    shots = tmp_path / "shots.yaml"
    shots.write_text("eval:\n  few_shot: 50\n")
    with pytest.raises(ConfigError, match="--set: config key 'eval.few_shot' must be below eval.many_shot"):
        load_config(shots, ["eval.few_shot=150"])
    with pytest.raises(ConfigError, match=f"{shots}: config key 'eval.few_shot' must be below eval.many_shot \\(40\\)"):
        apply_overrides(load_config(shots), ["eval.many_shot=40"])


# -- the centroids' schedule follows optim's unless set ----------------------------------------

def _schedulers(*overrides):
    c = load_config("digits_lt_stage2", list(overrides))
    model = build_model(c)
    return c, build_optimizers(c, model, DiscCentroidsLoss(6, model.feat_dim))


@pytest.mark.parametrize("overrides, expected", [
    ((), (5, 0.1)),                                                  # digits_lt_stage2: optim (5, 0.1)
    (("optim.step_size=3", "optim.gamma=0.5"), (3, 0.5)),            # follows optim
    (("optim.step_size=3", "centroids.step_size=7"), (7, 0.1)),      # its own step, optim's gamma
    (("optim.gamma=0.5", "centroids.gamma=0.2"), (5, 0.2)),          # optim's step, its own gamma
    (("centroids.step_size=2", "centroids.gamma=0.3", "optim.step_size=9"), (2, 0.3)),
])
def test_centroid_scheduler_follows_optim_unless_set(overrides, expected):
    c, (_opt, sched, copt, csched) = _schedulers(*overrides)
    assert c.centroid_schedule == expected
    assert (csched.step_size, csched.gamma) == expected
    assert (sched.step_size, sched.gamma) == (c.optim.step_size, c.optim.gamma)
    step, gamma = expected
    for _ in range(step):
        copt.step()
        csched.step()
    assert copt.param_groups[0]["lr"] == pytest.approx(0.01 * gamma)


def test_centroid_schedule_unset_in_every_shipped_stage2_recipe():
    for name in shipped_configs():
        c = load_config(name)
        if c.stage == "oltr":
            assert (c.centroids.step_size, c.centroids.gamma) == (None, None), name
            assert c.centroid_schedule == (c.optim.step_size, c.optim.gamma), name

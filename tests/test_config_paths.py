"""Path-valued config keys: relative to the config file's folder; shipped, default, --set: cwd."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from oltr.train import load_config
from oltr.train.config import Config, config_from_dict
from oltr.train.config._schema import field_types, is_section_type

_PATHS = {"out_dir", "model.init", "data.root", "data.open_root", "data.train_list", "data.val_list",
          "data.test_list", "data.open_list"}


def _marked(cls=Config, prefix=""):
    for f in dataclasses.fields(cls):
        tp = field_types(cls)[f.name]
        if is_section_type(tp):
            yield from _marked(tp, f"{prefix}{f.name}.")
        elif f.metadata.get("path"):
            yield f"{prefix}{f.name}"


def test_every_path_valued_key_is_marked_as_a_path():
    assert set(_marked()) == _PATHS


def _user_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(text)
    return path


def test_relative_paths_in_a_user_config_resolve_against_its_folder(tmp_path, monkeypatch):
    here = tmp_path / "project" / "configs"
    path = _user_config(here, (
        "base: digits_lt_stage1\nname: runs/not-a-path\nout_dir: out\n"
        "data:\n  source: lists\n  root: ./images\n  open_root: /abs/open\n  train_list: lists/train.txt\n"
        "  val_list: ../val.txt\n  test_list: ''\nmodel:\n  init: ../weights/stage1.pt\n"))
    monkeypatch.chdir(tmp_path)
    c = load_config(path)
    assert c.out_dir == str(here / "out")
    assert c.data.root == str(here / "images")
    assert c.data.train_list == str(here / "lists" / "train.txt")
    assert c.data.val_list == str(tmp_path / "project" / "val.txt")
    assert c.model.init == str(tmp_path / "project" / "weights" / "stage1.pt")
    assert c.data.open_root == "/abs/open"                 # absolute: unchanged
    assert c.data.test_list == "" and c.data.open_list == ""  # unset stays unset
    assert c.name == "runs/not-a-path"                     # not a path field


def test_paths_inherited_from_a_base_file_resolve_against_the_base_files_folder(tmp_path, monkeypatch):
    base = _user_config(tmp_path / "shared", "base: digits_lt_stage1\ndata:\n  root: imgs\n")
    child = tmp_path / "team" / "child.yaml"
    child.parent.mkdir()
    child.write_text(f"base: {os.path.relpath(base, child.parent)}\nout_dir: out\n")
    monkeypatch.chdir(tmp_path / "team")
    c = load_config(child)
    assert c.data.root == str(tmp_path / "shared" / "imgs") and c.out_dir == str(tmp_path / "team" / "out")


def test_set_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    path = _user_config(tmp_path / "cfg", "base: digits_lt_stage1\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    c = load_config(path, ["out_dir=runs/a", "model.init=../w.pt", "data.root=/abs"])
    assert c.out_dir == str(work / "runs" / "a") and c.model.init == str(tmp_path / "w.pt")
    assert c.data.root == "/abs"


def test_shipped_recipes_and_defaults_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    official = load_config("imagenet_lt_stage2")
    assert official.data.train_list == str(tmp_path / "data" / "ImageNet_LT" / "ImageNet_LT_train.txt")
    assert official.model.init == str(tmp_path / "logs" / "ImageNet_LT" / "stage1" / "best.pt")
    assert official.data.root == "/path/to/ImageNet"
    demo = load_config("fashion_lt_stage2")  # its model.init is where fashion_lt_stage1 writes
    assert demo.model.init == os.path.join(load_config("fashion_lt_stage1").out_dir, "best.pt")
    assert config_from_dict({}).out_dir == str(tmp_path / "runs" / "run")


def test_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = _user_config(tmp_path / "cfg", "base: digits_lt_stage1\nout_dir: ~/runs/x\n")
    assert load_config(path).out_dir == str(tmp_path / "runs" / "x")
    assert load_config("digits_lt_stage1", ["model.init=~/w.pt"]).model.init == str(tmp_path / "w.pt")


def test_a_loaded_config_holds_only_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config("places_lt_stage2").to_dict()
    for key in _PATHS:
        node = c
        for part in key.split("."):
            node = node[part]
        assert node in ("", None) or os.path.isabs(node), key


@pytest.mark.parametrize("value", ["", None])
def test_unset_paths_are_not_resolved(value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = load_config("digits_lt_stage1", [f"model.init={'null' if value is None else ''}"])
    assert c.model.init == value

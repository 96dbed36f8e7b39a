"""Outputs never overwrite inputs: ``oltr predict -o``, ``oltr eval --json``, ``oltr train --out``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from oltr._paths import OutputOverwritesInputError, refuse_overwrite, same_file
from oltr.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("oltr: error: ")
    return err[0]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A fake checkpoint, an image, a list file naming two images, and links to them."""
    monkeypatch.chdir(tmp_path)
    made = {}
    for name, data in (("best.pt", b"PK checkpoint bytes"), ("img.png", b"\x89PNG image"),
                       ("a.png", b"\x89PNG a"), ("sub/b.png", b"\x89PNG b")):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        made[name] = path
    (tmp_path / "list.txt").write_text("a.png 0\nsub/b.png -1\n")
    made["list.txt"] = tmp_path / "list.txt"
    (tmp_path / "ckpt_link.pt").symlink_to(made["best.pt"])
    os.link(made["img.png"], tmp_path / "img_hard.png")
    return made


def _unchanged(files) -> None:
    assert files["best.pt"].read_bytes() == b"PK checkpoint bytes"
    assert files["img.png"].read_bytes() == b"\x89PNG image"
    assert files["a.png"].read_bytes() == b"\x89PNG a"
    assert files["sub/b.png"].read_bytes() == b"\x89PNG b"
    assert files["list.txt"].read_text() == "a.png 0\nsub/b.png -1\n"


@pytest.mark.parametrize("argv, named", [
    (["predict", "best.pt", "img.png", "-o", "best.pt"], "best.pt"),
    (["predict", "best.pt", "img.png", "--output", "img.png"], "img.png"),
    (["predict", "best.pt", "img.png", "a.png", "-o", "a.png"], "a.png"),       # the second input
    (["predict", "best.pt", "img.png", "-o", "./sub/../best.pt"], "best.pt"),    # another spelling
    (["predict", "best.pt", "img.png", "-o", "ckpt_link.pt"], "best.pt"),        # symlink to the input
    (["predict", "ckpt_link.pt", "img.png", "-o", "best.pt"], "ckpt_link.pt"),   # input is the link
    (["predict", "best.pt", "img.png", "-o", "img_hard.png"], "img.png"),        # hard link
    (["predict", "best.pt", "list.txt", "-o", "list.txt"], "list.txt"),          # the list file itself
    (["predict", "best.pt", "list.txt", "-o", "a.png"], "a.png"),                # an image it lists
    (["predict", "best.pt", "list.txt", "-o", "sub/b.png"], "b.png"),
    (["predict", "best.pt", "list.txt", "--root", "sub", "-o", "sub/a.png"], "a.png"),  # under --root
    (["eval", "best.pt", "--json", "best.pt"], "best.pt"),
    (["eval", "best.pt", "--json", "ckpt_link.pt"], "best.pt"),
    (["eval", "ckpt_link.pt", "--json", "best.pt"], "ckpt_link.pt"),
])
def test_cli_refuses_output_that_is_an_input(files, argv, named, capsys):
    before = {p: p.read_bytes() for p in Path.cwd().rglob("*") if p.is_file()}
    assert main(argv) == 1
    line = _error_line(capsys)
    assert "refusing to overwrite an input" in line and named in line
    _unchanged(files)
    assert {p: p.read_bytes() for p in Path.cwd().rglob("*") if p.is_file()} == before  # nothing written


def test_predict_other_output_passes_the_guard(files, capsys):
    # a fresh output path gets past the guard: the fake checkpoint then fails to load
    assert main(["predict", "best.pt", "img.png", "-o", "out.jsonl"]) == 1
    assert "refusing" not in _error_line(capsys)
    assert not Path("out.jsonl").exists()
    _unchanged(files)


@pytest.mark.parametrize("target", ["best.pt", "last.pt", "config.yaml", "log.jsonl"])
def test_train_refuses_an_out_dir_that_holds_its_inputs(tmp_path, target, capsys):
    run = tmp_path / "run"
    run.mkdir()
    if target == "config.yaml":  # the config file itself lies where the run writes config.yaml
        (run / "config.yaml").write_text(f"data:\n  source: digits_lt\nout_dir: {run}\nepochs: 1\n")
        argv = ["train", str(run / "config.yaml")]
    else:  # model.init (or a data list) is a file the run would replace
        (run / target).write_bytes(b"precious")
        key = "model.init" if target.endswith(".pt") else "data.open_list"
        argv = ["train", "digits_lt_stage1", "--out", str(run), "--set", f"{key}={run / target}"]
    before = (run / target).read_bytes()
    assert main(argv) == 1
    line = _error_line(capsys)
    assert "out_dir" in line and target in line and "refusing to overwrite" in line
    assert (run / target).read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == [target]


def test_same_file_and_refuse_overwrite(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("x")
    assert same_file(a, a) and same_file(a, tmp_path / "." / "a")
    assert not same_file(a, b)  # b does not exist
    b.write_text("x")  # same contents, another file
    assert not same_file(a, b)
    (tmp_path / "dangling").symlink_to(tmp_path / "c")  # link to a file not yet written
    assert same_file(tmp_path / "dangling", tmp_path / "c")
    refuse_overwrite(None, [a])
    refuse_overwrite("-", [a])
    refuse_overwrite(b, [a, None, ""])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputOverwritesInputError, match="--json 'a'"):
        refuse_overwrite("a", [b, a], what="--json")
    assert issubclass(OutputOverwritesInputError, ValueError)

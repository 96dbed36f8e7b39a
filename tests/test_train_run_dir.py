"""`oltr train` into a non-empty run folder: refused unless --resume or --overwrite; --overwrite
removes only oltr's own files."""
from __future__ import annotations

from pathlib import Path

import pytest

import oltr.train
from oltr.cli import main
from oltr.train.run_dir import RunDirNotEmptyError, own_run_files, prepare_run_dir

OWN = ["best.pt", "last.pt", "log.jsonl", "config.yaml", "eval_test_open.json", "eval_my_list.json",
       ".best.pt.abc123.tmp"]
FOREIGN = ["notes.txt", "eval.json", "best.pt.bak", "config.yml"]


def _fill(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(name)


def test_an_empty_or_missing_folder_is_fine(tmp_path):
    assert prepare_run_dir(tmp_path / "missing") == []
    (tmp_path / "empty").mkdir()
    assert prepare_run_dir(tmp_path / "empty") == []


@pytest.mark.parametrize("names", [["best.pt"], ["notes.txt"], [".hidden"]])
def test_a_non_empty_folder_is_refused_naming_both_flags(tmp_path, names):
    _fill(tmp_path / "run", names)
    with pytest.raises(RunDirNotEmptyError, match=r"is not empty .* pass --resume .* or --overwrite") as info:
        prepare_run_dir(tmp_path / "run")
    assert names[0] in str(info.value) and str(tmp_path / "run") in str(info.value)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(names)  # nothing touched


def test_resume_keeps_everything(tmp_path):
    _fill(tmp_path, OWN + FOREIGN)
    assert prepare_run_dir(tmp_path, resume=True) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OWN + FOREIGN)


def test_overwrite_removes_only_oltrs_files(tmp_path):
    _fill(tmp_path, OWN + FOREIGN)
    (tmp_path / "plots").mkdir()
    assert sorted(p.name for p in own_run_files(tmp_path)) == sorted(OWN)
    removed = prepare_run_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in removed) == sorted(OWN)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FOREIGN + ["plots"])


def test_flags_exclude_each_other_and_a_file_is_no_folder(tmp_path):
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_run_dir(tmp_path, resume=True, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirNotEmptyError, match="is a file, not a folder"):
        prepare_run_dir(tmp_path / "file", overwrite=True)


@pytest.fixture
def fake_train(monkeypatch):
    calls = []

    def train(config, resume=False, device=None):
        folder = Path(config["out_dir"])
        files = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
        calls.append({"out_dir": config["out_dir"], "resume": resume, "files": files})

        class Result:
            best_acc, best_epoch, best_path = 0.5, 1, "best.pt"
        return Result()

    monkeypatch.setattr(oltr.train, "train", train)
    return calls


def _train_args(out, *flags):
    return ["train", "digits_lt_stage1", "--out", str(out), "--device", "cpu", "--set", "progress=false", *flags]


def test_cli_refuses_a_non_empty_run_folder(tmp_path, fake_train, capsys):
    _fill(tmp_path / "run", ["best.pt", "log.jsonl"])
    assert main(_train_args(tmp_path / "run")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oltr: error: out_dir")
    assert "--resume" in err[0] and "--overwrite" in err[0]
    assert fake_train == []


def test_cli_overwrite_lists_what_it_removed_and_keeps_the_rest(tmp_path, fake_train, capsys):
    _fill(tmp_path / "run", ["best.pt", "log.jsonl", "notes.txt"])
    assert main(_train_args(tmp_path / "run", "--overwrite")) == 0
    assert fake_train[0]["files"] == ["notes.txt"] and fake_train[0]["resume"] is False
    err = capsys.readouterr().err
    assert "--overwrite: removed 2 file(s) of the previous run: best.pt, log.jsonl" in err


def test_cli_resume_and_a_fresh_folder_train(tmp_path, fake_train):
    _fill(tmp_path / "run", ["best.pt", "last.pt"])
    assert main(_train_args(tmp_path / "run", "--resume")) == 0
    assert fake_train[0]["resume"] is True and fake_train[0]["files"] == ["best.pt", "last.pt"]
    assert main(_train_args(tmp_path / "new")) == 0
    assert len(fake_train) == 2 and fake_train[1]["files"] is None


def test_cli_resume_with_overwrite_is_a_usage_error(tmp_path, fake_train, capsys):
    assert main(_train_args(tmp_path, "--resume", "--overwrite")) == 2
    assert "not allowed with argument" in capsys.readouterr().err and fake_train == []

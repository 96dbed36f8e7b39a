"""``oltr eval`` / ``oltr predict`` refuse a checkpoint whose bytes changed (it used to load
silently and print other metrics)."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from oltr.cli import main
from oltr.train import load_config, train


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    out = tmp_path_factory.mktemp("corrupt") / "run"
    config = load_config("digits_lt_stage1", ["epochs=1", "steps_per_epoch=2", "progress=false", "device=cpu",
                                              f"out_dir={out}"])
    return train(config).best_path


def _flip_in_record(source, target, suffix):
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename and i.filename.endswith(suffix)),
                   key=lambda i: i.file_size)
    header = data[info.header_offset:info.header_offset + 30]
    start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30], "little")
    data[start + info.file_size // 2] ^= 0x04
    target.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix", ["0", "1"])
def test_eval_and_predict_refuse_a_changed_checkpoint(best, tmp_path, capsys, suffix):
    bad = tmp_path / "changed.pt"
    _flip_in_record(best, bad, suffix)
    capsys.readouterr()
    assert main(["eval", str(bad), "--json", str(tmp_path / "m.json"), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert "changed.pt" in err and "CRC-32" in err and not (tmp_path / "m.json").exists()
    np.save(tmp_path / "f.npy", np.zeros((2, 64), np.float32))
    assert main(["predict", str(bad), str(tmp_path / "f.npy"), "-o", str(tmp_path / "p.jsonl")]) == 1
    assert "CRC-32" in capsys.readouterr().err and not (tmp_path / "p.jsonl").exists()

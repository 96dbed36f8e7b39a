"""Embedded datasets: structure, sizes, shot groups, licence notice, rebuild."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from oltr.data import shot_groups
from oltr.datasets import FASHION_LT_PATH, OpenLTData, digits_lt, fashion_lt

FASHION_SRC = Path("/usr/share/datasets/fashion-mnist")
REPO = Path(__file__).resolve().parents[1]


def _check_structure(d: OpenLTData, shape):
    k = d.num_classes
    assert d.image_shape == shape
    for split in ("train", "val", "test", "open"):
        x, y = d.split(split)
        assert x.dtype == np.uint8 and x.shape[1:] == shape and y.dtype == np.int64
        assert y.shape == (x.shape[0],)
    assert tuple(np.bincount(d.train_labels, minlength=k).tolist()) == d.train_counts
    for split in ("val", "test"):
        per = np.bincount(d.split(split)[1], minlength=k)
        assert per.min() == per.max() > 0  # balanced
    assert np.all(d.open_labels == -1) and d.open_labels.size > 0
    x, y = d.split("test_open")
    assert x.shape[0] == d.test_labels.size + d.open_labels.size and np.sum(y == -1) == d.open_labels.size
    assert len(d.class_names) == k == len(d.known_classes)
    assert not set(d.known_classes) & set(d.unknown_classes)
    groups = shot_groups(d.train_counts)
    assert groups.many.any() and groups.medium.any() and groups.few.any()


def test_fashion_lt_structure_and_size():
    d = fashion_lt()
    _check_structure(d, (28, 28))
    assert d.train_counts == (640, 320, 160, 80, 40, 20, 10)
    assert d.class_names == ("T-shirt/top", "Trouser", "Sneaker", "Pullover", "Ankle boot", "Dress", "Shirt")
    assert d.unknown_class_names == ("Coat", "Sandal", "Bag")
    assert len(d.train_labels) <= 5000  # the demo trains 2 models × 3 seeds on 2 cores
    assert FASHION_LT_PATH.stat().st_size <= 5_000_000
    assert d.test_labels.size == 1400 and d.open_labels.size == 600 and d.val_labels.size == 140
    assert not d.train_images.flags.writeable  # read-only (tests/test_data_hardening.py)


def test_fashion_lt_ships_zalando_mit_notice():
    notice = (FASHION_LT_PATH.parent / "FASHION_MNIST_LICENSE").read_text()
    assert "Zalando SE" in notice and "MIT License" in notice and "Permission is hereby granted" in notice


@pytest.mark.skipif(not FASHION_SRC.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_build_script_reproduces_the_shipped_file(tmp_path):
    spec = importlib.util.spec_from_file_location("build_fashion_lt", REPO / "scripts" / "build_fashion_lt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "f.npz"
    assert mod.main(["--src", str(FASHION_SRC), "--out", str(out)]) == 0
    with np.load(out) as new, np.load(FASHION_LT_PATH) as shipped:
        assert sorted(new.files) == sorted(shipped.files)
        for key in new.files:
            assert np.array_equal(new[key], shipped[key]), key


def test_build_script_reports_missing_source(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("build_fashion_lt", REPO / "scripts" / "build_fashion_lt.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--src", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 1
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_digits_lt_structure_and_seeds():
    d = digits_lt()
    _check_structure(d, (8, 8))
    assert d.train_counts == (120, 60, 30, 15, 8, 4)
    assert d.num_classes == 6 and d.unknown_class_names == ("6", "7", "8", "9")
    assert d.train_images.max() > 200  # 0..16 scaled to 0..255
    other = digits_lt(seed=1)
    assert not np.array_equal(other.train_images, d.train_images)
    assert np.array_equal(digits_lt().train_images, d.train_images)  # seeded: the same split again


def test_torch_dataset_helper():
    d = digits_lt()
    ds = d.torch_dataset("test_open")
    x, y, i = ds[len(ds) - 1]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y == -1 and i == len(ds) - 1
    assert float(x.max()) <= 1.0
    norm = d.torch_dataset("train", mean=[0.5], std=[0.5])
    assert float(norm.images.min()) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="split"):
        d.split("holdout")


def test_idx_reader_rejects_bad_files(tmp_path):
    from oltr.datasets._idx import read_idx

    bad = tmp_path / "x.idx"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "y.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"\x00\x01")
    with pytest.raises(ValueError, match="header announces"):
        read_idx(short)
    good = tmp_path / "z.idx"
    good.write_bytes(bytes([0, 0, 8, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + bytes(range(6)))
    assert read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]

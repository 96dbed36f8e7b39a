"""List files and ListDataset / ArrayDataset: parsing, errors, missing images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.data import (
    ArrayDataset,
    ListDataset,
    ListFileError,
    images_to_tensor,
    read_list_file,
    write_image_list,
    write_list_file,
)


def test_read_list_file_official_format(tmp_path):
    f = tmp_path / "x_train.txt"
    f.write_text("train/a/1.JPEG 0\n\n  train/b/2.JPEG\t3 extra tokens\nopen/x.jpg -1\n")
    paths, labels = read_list_file(f)
    assert paths == ["train/a/1.JPEG", "train/b/2.JPEG", "open/x.jpg"]
    assert labels.dtype == np.int64 and labels.tolist() == [0, 3, -1]


@pytest.mark.parametrize(
    "bad, message",
    [("a.png\n", "expected '<path> <label>'"), ("a.png x\n", "not an integer"),
     ("a.png -2\n", "negative")],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    f = tmp_path / "bad.txt"
    f.write_text("ok.png 1\n" + bad)
    with pytest.raises(ListFileError, match=message) as err:
        read_list_file(f)
    assert f"{f}:2:" in str(err.value)


def test_missing_list_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_list_file(tmp_path / "nope.txt")


def test_write_list_file_round_trip_and_rejects_spaces(tmp_path):
    out = write_list_file(tmp_path / "sub" / "l.txt", ["a/1.png", "b/2.png"], [4, -1])
    paths, labels = read_list_file(out)
    assert paths == ["a/1.png", "b/2.png"] and labels.tolist() == [4, -1]
    with pytest.raises(ValueError, match="whitespace"):
        write_list_file(tmp_path / "l2.txt", ["a b.png"], [0])
    with pytest.raises(ValueError, match="differ in length"):
        write_list_file(tmp_path / "l3.txt", ["a.png"], [0, 1])


@pytest.fixture
def image_list(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 7), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, -1])
    lst = write_image_list(images, labels, tmp_path / "img", tmp_path / "list.txt")
    return images, labels, lst, tmp_path / "img"


def test_list_dataset_reads_images(image_list):
    images, labels, lst, root = image_list
    ds = ListDataset(lst, root, mode="L")
    assert len(ds) == 5 and ds.labels.tolist() == labels.tolist()
    img, label, path = ds[3]
    assert np.array_equal(np.asarray(img), images[3])
    assert label == 1 and path == str(root / "img" / "000003.png")
    rgb, _, _ = ListDataset(lst, root)[0]
    assert rgb.mode == "RGB"
    tensor_ds = ListDataset(lst, root, transform=lambda im: torch.from_numpy(np.array(im)), mode="L")
    assert torch.equal(tensor_ds[0][0], torch.from_numpy(images[0]))


def test_missing_image_raises_naming_path(image_list):
    _, _, lst, root = image_list
    (root / "img" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="000002.png"):
        ListDataset(lst, root)
    lazy = ListDataset(lst, root, check_files=False)
    with pytest.raises(FileNotFoundError, match="000002.png"):
        lazy[2]


def test_unreadable_image_raises_naming_path(image_list):
    _, _, lst, root = image_list
    (root / "img" / "000001.png").write_bytes(b"not a png at all")
    ds = ListDataset(lst, root)
    with pytest.raises(OSError, match="000001.png"):
        ds[1]


def test_skip_option_drops_and_counts(image_list):
    _, labels, lst, root = image_list
    (root / "img" / "000002.png").unlink()
    (root / "img" / "000004.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="skipped 2 of 5"):
        ds = ListDataset(lst, root, on_missing="skip")
    assert len(ds) == 3 and ds.labels.tolist() == [0, 1, 1]
    assert [p.endswith(n) for p, n in zip(ds.skipped, ["000002.png", "000004.png"])] == [True, True]
    with pytest.raises(ValueError, match="on_missing"):
        ListDataset(lst, root, on_missing="ignore")


def test_array_dataset_float_tensors():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    ds = ArrayDataset(images, [3, -1])
    x, y, i = ds[1]
    assert x.shape == (1, 3, 4) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.from_numpy(images[1]).float() / 255)
    assert (y, i) == (-1, 1)
    xs, ys = ds.tensors()
    assert xs.shape == (2, 1, 3, 4) and ys.tolist() == [3, -1]
    chw = np.zeros((2, 3, 4, 4), dtype=np.uint8)
    assert ArrayDataset(chw)[0][0].shape == (3, 4, 4) and ArrayDataset(chw)[0][1] == -1
    norm = images_to_tensor(np.full((1, 2, 2), 255, np.uint8), mean=[0.5], std=[0.25])
    assert torch.allclose(norm, torch.full((1, 1, 2, 2), 2.0))


def test_array_dataset_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        ArrayDataset(np.zeros((2, 3, 3), np.float32), [0, 1])
    with pytest.raises(ValueError, match="labels must have shape"):
        ArrayDataset(np.zeros((2, 3, 3), np.uint8), [0])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        ArrayDataset(np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="std must be positive"):
        images_to_tensor(np.zeros((1, 2, 2), np.uint8), std=[0.0])


def test_write_image_list_rgb_and_mode_none(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8)
    lst = write_image_list(rgb, [0, 1], tmp_path, tmp_path / "rgb.txt", prefix="c")
    img, label, _ = ListDataset(lst, tmp_path, mode=None)[1]
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb[1]) and label == 1
    with pytest.raises(ValueError, match="uint8"):
        write_image_list(rgb.astype(np.float32), [0, 1], tmp_path, tmp_path / "bad.txt")

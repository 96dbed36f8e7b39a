"""The data layer under hostile input: immutable dataset caches, 16-bit images, truncated and
oversized images, bad list files, empty or mislabelled splits, per-class counts."""
from __future__ import annotations

import struct
import warnings
import zlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from oltr.data import (
    ArrayDataset,
    ClassAwareSampler,
    ListDataset,
    ListFileError,
    check_counts,
    read_list_file,
)
from oltr.data.images import load_image, to_8bit
from oltr.datasets import digits_lt, fashion_lt
from oltr.train import ConfigError, load_config, train
from oltr.train.data import DataBundle, build_data

Image = pytest.importorskip("PIL.Image")

ARRAY_FIELDS = [f"{s}_{kind}" for s in ("train", "val", "test", "open") for kind in ("images", "labels")]
LOADERS = {"digits_lt": digits_lt, "digits_lt_seed3": lambda: digits_lt(seed=3), "fashion_lt": fashion_lt}


def _png(path, width, height, depth, color_type, rows: bytes):
    """A PNG written byte by byte (PIL cannot write 16-bit RGB or a lying header)."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


# -- 1. the embedded datasets cannot be changed through what they return ----------------------

@pytest.mark.parametrize("name", sorted(LOADERS))
def test_every_returned_field_resists_mutation_across_calls(name):
    load = LOADERS[name]
    first = load()
    pristine = {f: np.array(getattr(first, f)) for f in ARRAY_FIELDS}
    counts = first.train_counts
    for field in ARRAY_FIELDS:
        arr = getattr(first, field)
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1
        with pytest.raises(ValueError, match="read-only"):
            arr += 1
        with pytest.raises(ValueError, match="WRITEABLE"):
            arr.setflags(write=True)  # a view of a read-only base: cannot be switched back
    for split in ("train", "val", "test", "open", "test_open"):
        for arr in first.split(split):
            with pytest.raises(ValueError, match="read-only"):
                arr[...] = 0
    assert isinstance(counts, tuple) and all(type(c) is int for c in counts)
    with pytest.raises(TypeError):
        counts[0] = 0  # type: ignore[index]
    for field in ("class_names", "unknown_class_names", "known_classes", "unknown_classes"):
        assert isinstance(getattr(first, field), tuple)
    with pytest.raises(AttributeError):
        first.train_counts = (1,)  # type: ignore[misc]
    # a tensor that shares a result's memory (torch.from_numpy) reaches only that result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "the given NumPy array is not writable"
        torch.from_numpy(first.train_images).fill_(7)
        torch.from_numpy(first.train_labels).fill_(-5)
    second = load()
    for field in ARRAY_FIELDS:
        assert np.array_equal(getattr(second, field), pristine[field]), field
        assert not np.shares_memory(getattr(second, field), getattr(first, field)), field
    assert second.train_counts == counts


def test_consumers_copy_read_only_arrays():
    """Tensors made from a dataset are copies: writing them leaves the dataset as it was."""
    d = digits_lt()
    before = np.array(d.train_images)
    ds = d.torch_dataset("train")
    ds.images.add_(1.0)
    _, labels = ds.tensors()
    labels.fill_(3)
    ArrayDataset(d.test_images, d.test_labels).images.zero_()
    config = load_config("digits_lt_stage2", ["device=cpu", "progress=false"])
    bundle = build_data(config)
    assert not bundle.train_labels.flags.writeable and isinstance(bundle.train_counts, tuple)
    list(ClassAwareSampler(bundle.train_labels, num_samples=16))
    assert np.array_equal(digits_lt().train_images, before) and np.array_equal(d.train_images, before)
    assert digits_lt().train_labels.tolist() == d.train_labels.tolist()


def test_open_lt_data_keeps_copies_of_the_callers_arrays():
    d = digits_lt()
    images = np.array(d.train_images)
    mine = replace(d, train_images=images)
    images[:] = 0
    assert mine.train_images.max() > 0 and not mine.train_images.flags.writeable


# -- 7. per-class counts: one non-negative count per class -----------------------------------

@pytest.mark.parametrize(
    "counts, match",
    [((120, 60, 30, 15, 8), r"one count per class \(6 classes\), got shape \(5,\)"),
     ((120, 60, 30, 15, 8, 4, 0), r"got shape \(7,\)"),
     ((), r"got shape \(0,\)"),
     ((120, 60, 30, 15, 8, -4), "non-negative; class 5 has -4"),
     ((120, 60, 30, 15, 8, 4.5), "whole numbers"),
     (("a",) * 6, "integer counts"),
     ((120, 60, 30, 15, 4, 8), r"disagree with train_labels \(\[120, 60, 30, 15, 8, 4\]\)")],
)
def test_bundle_train_counts_are_checked(counts, match):
    with pytest.raises(ValueError, match=match) as err:
        replace(digits_lt(), train_counts=counts)
    assert "digits_lt.train_counts" in str(err.value)


def test_check_counts_names_its_argument():
    assert check_counts(np.array([3, 0, 2]), 3) == (3, 0, 2)
    assert check_counts([2.0, 1.0], 2, "x") == (2, 1)
    with pytest.raises(ValueError, match=r"^checkpoint.train_class_counts must hold one count per class \(4"):
        check_counts([1, 2, 3], 4, "checkpoint.train_class_counts")
    with pytest.raises(ValueError, match="got shape"):
        check_counts([[1, 2]], 2)
    bundle = build_data(load_config("digits_lt_stage1", ["device=cpu"]))
    with pytest.raises(ValueError, match=r"train_counts must hold one count per class \(6 classes\)"):
        replace(bundle, train_counts=bundle.train_counts[:-1])


@pytest.mark.parametrize("split, bad", [("train", 6), ("val", -1), ("test", 9), ("open", 0), ("open", 2)])
def test_bundle_labels_are_checked_per_split(split, bad):
    d = digits_lt()
    labels = np.array(getattr(d, f"{split}_labels"))
    labels[3] = bad
    changes = {f"{split}_labels": labels}
    if split == "train":
        changes["train_counts"] = tuple(np.bincount(labels.clip(0), minlength=7)[:6])
    with pytest.raises(ValueError, match=rf"{split}_labels must be .*label {bad} at index 3"):
        replace(d, **changes)


# -- 2. 16-bit images are scaled, not saturated ----------------------------------------------

SIXTEEN = np.array([[0, 128, 257, 32767], [32768, 65278, 65407, 65535]], dtype=np.uint16)
EIGHT = np.array([[0, 0, 1, 127], [128, 254, 255, 255]], dtype=np.uint8)  # round(v * 255 / 65535)


def test_sixteen_bit_grayscale_png_is_scaled(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as raw:
        assert raw.mode == "I;16"  # what PIL gives for a 16-bit grayscale PNG
    assert np.array_equal(np.asarray(load_image(tmp_path / "g16.png", "L")), EIGHT)
    assert np.array_equal(np.asarray(load_image(tmp_path / "g16.png", None)), EIGHT)
    rgb = np.asarray(load_image(tmp_path / "g16.png", "RGB"))
    assert rgb.shape == (2, 4, 3) and np.array_equal(rgb[..., 1], EIGHT)
    (tmp_path / "list.txt").write_text("g16.png 0\n")
    image, _, _ = ListDataset(tmp_path / "list.txt", tmp_path, mode="L")[0]
    assert np.array_equal(np.asarray(image), EIGHT)


def test_sixteen_bit_pgm_and_tiff_are_scaled(tmp_path):
    Image.fromarray(SIXTEEN).save(tmp_path / "g16.tif")
    (tmp_path / "g16.pgm").write_bytes(b"P5 4 2 65535\n" + SIXTEEN.astype(">u2").tobytes())
    for name in ("g16.tif", "g16.pgm"):
        assert np.array_equal(np.asarray(load_image(tmp_path / name, "L")), EIGHT), name


def test_sixteen_bit_rgb_png_is_not_saturated(tmp_path):
    values = np.array([[[0, 32768, 65535], [2570, 51400, 1000]]], dtype=">u2")
    _png(tmp_path / "rgb16.png", 2, 1, 16, 2, b"".join(b"\x00" + row.tobytes() for row in values))
    got = np.asarray(load_image(tmp_path / "rgb16.png", "RGB")).astype(int)
    assert np.all(np.abs(got - values.astype(int) * 255 / 65535) <= 1)


def test_grayscale_transform_scales_sixteen_bit_images():
    from oltr.train.transforms import build_transform

    config = load_config("digits_lt_stage1", ["device=cpu"])
    tensor = build_transform(config, train=False)(Image.fromarray(np.resize(SIXTEEN, (8, 8))))
    assert torch.allclose(tensor[0], torch.tensor(np.resize(EIGHT, (8, 8)), dtype=torch.float32) / 255)
    eight_bit = Image.fromarray(np.resize(EIGHT, (8, 8)))
    assert to_8bit(eight_bit) is eight_bit  # 8-bit images pass unchanged


# -- 3. on_missing="skip" decodes every image in full ----------------------------------------

def _truncated_jpeg(path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with Image.open(path) as img:
        img.verify()  # the header check the skip option used to rely on passes
    return path


@pytest.fixture
def mixed_images(tmp_path):
    good = np.random.default_rng(1).integers(0, 256, (5, 6, 6), dtype=np.uint8)
    names = []
    for i, img in enumerate(good):
        Image.fromarray(img).save(tmp_path / f"ok{i}.png")
        names.append(f"ok{i}.png")
    _truncated_jpeg(tmp_path / "cut.jpg")
    png = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) - 30])  # IDAT cut short
    (tmp_path / "empty.png").write_bytes(b"")
    lines = [f"{n} {i % 2}" for i, n in enumerate(names)] + ["cut.jpg 0", "cut.png 1", "empty.png 0", "gone.png 1"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_skip_drops_truncated_images_and_names_them(mixed_images):
    root = mixed_images
    with pytest.warns(UserWarning, match="skipped 4 of 9 images") as record:
        ds = ListDataset(root / "list.txt", root, on_missing="skip")
    message = str(record[0].message)
    for name in ("cut.jpg", "cut.png", "empty.png", "gone.png"):
        assert name in message
    assert "image not found" in message and "truncated" in message
    assert [p.rsplit("/", 1)[1] for p in ds.skipped] == ["cut.jpg", "cut.png", "empty.png", "gone.png"]
    assert len(ds) == 5 and all(ds[i][0].size == (6, 6) for i in range(len(ds)))
    with pytest.raises(OSError, match="cut.jpg"):  # without skip the truncated file fails by name
        ListDataset(root / "list.txt", root, check_files=False)[5]


def test_a_bad_mode_is_an_argument_error_not_a_skipped_dataset(mixed_images):
    for mode in ("XYZ", "rgb", ""):
        with pytest.raises(ValueError, match=f"mode must be None or a PIL mode .*got '{mode}'"):
            ListDataset(mixed_images / "list.txt", mixed_images, mode=mode, on_missing="skip")


def test_skip_warning_names_the_first_files_and_counts_the_rest(tmp_path):
    lines = [f"missing_{i}.png 0" for i in range(13)]
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "list.txt").write_text("\n".join(["ok.png 0", *lines]) + "\n")
    with pytest.warns(UserWarning, match=r"skipped 13 of 14") as record:
        ds = ListDataset(tmp_path / "list.txt", tmp_path, on_missing="skip")
    message = str(record[0].message)
    assert "missing_9.png" in message and "missing_10.png" not in message
    assert "... and 3 more (all in dataset.skipped)" in message and len(ds.skipped) == 13


# -- 5. decompression bombs and oversized images name the file -------------------------------

def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    bomb = _png(tmp_path / "bomb.png", 100_000, 100_000, 8, 0, b"\x00")
    with pytest.raises(OSError, match=r"cannot read image .*bomb.png: Image size \(10000000000 pixels\)"):
        load_image(bomb, "L")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "warn.png")  # 144: between 100 and 200
    Image.fromarray(np.zeros((15, 15), np.uint8)).save(tmp_path / "big.png")  # 225 > 2 x 100
    with pytest.warns(Image.DecompressionBombWarning, match=r"warn.png: Image size \(144 pixels\)"):
        assert load_image(tmp_path / "warn.png", "L").size == (12, 12)
    (tmp_path / "list.txt").write_text("big.png 0\nbomb.png 1\n")
    ds = ListDataset(tmp_path / "list.txt", tmp_path)
    for i, name in enumerate(("big.png", "bomb.png")):
        with pytest.raises(OSError, match=rf"cannot read image .*{name}: .*MAX_IMAGE_PIXELS"):
            ds[i]
    with pytest.warns(UserWarning, match="skipped 2 of 2") as record:
        ListDataset(tmp_path / "list.txt", tmp_path, on_missing="skip")
    assert "big.png" in str(record[0].message) and "bomb.png" in str(record[0].message)


# -- 5. list files: encoding and label range -------------------------------------------------

@pytest.mark.parametrize("raw, line, match", [
    (b"caf\xe9.png 0\n", 2, r"not UTF-8 text \(byte 0xe9 at column 4\)"),
    (b"\xff\xfea\x00 \x001\x00\n", 2, "not UTF-8 text"),  # UTF-16
    (b"a.png 1\r\nb.png \x80\r\n", 3, "not UTF-8 text"),
])
def test_non_utf8_list_names_file_and_line(tmp_path, raw, line, match):
    f = tmp_path / "list.txt"
    f.write_bytes(b"ok.png 0\n" + raw)
    with pytest.raises(ListFileError, match=match) as err:
        read_list_file(f)
    assert str(err.value).startswith(f"{f}:{line}:")


def test_utf8_with_bom_and_any_line_ending_is_read(tmp_path):
    f = tmp_path / "list.txt"
    f.write_bytes("\ufeffé.png 0\r\nb.png 1\rc.png -1\n".encode())
    paths, labels = read_list_file(f)
    assert paths == ["é.png", "b.png", "c.png"] and labels.tolist() == [0, 1, -1]


@pytest.mark.parametrize("label, match", [
    (str(2**70), "out of range"), (str(2**63), "out of range"), ("9" * 5000, "out of range"),
    (str(-(2**70)), "negative"), ("-2", "negative"), (str(-(2**63) - 1), "negative"),
])
def test_out_of_range_labels_name_file_and_line(tmp_path, label, match):
    f = tmp_path / "list.txt"
    f.write_text(f"a.png 0\n\nb.png {label}\n")
    with pytest.raises(ListFileError, match=match) as err:
        read_list_file(f)
    assert str(err.value).startswith(f"{f}:3:")
    f.write_text(f"a.png {2**63 - 1}\n")
    assert read_list_file(f)[1].tolist() == [2**63 - 1]  # the largest int64 is still a label


# -- 6. open-set lists hold -1 only; known-class lists hold 0..K-1 ----------------------------

def test_list_label_rules(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("a.png -1\nb.png -1\nc.png 3\nd.png 0\n")
    with pytest.raises(ListFileError, match=r"list.txt:3: label 3 in an open-set list \(every label must be -1\)"):
        read_list_file(f, open_set=True)
    with pytest.raises(ListFileError, match=r"list.txt:1: label -1 is outside \[0, 4\).*open set"):
        read_list_file(f, num_classes=4)
    f.write_text("a.png 0\nb.png 4\n")
    with pytest.raises(ListFileError, match=r"list.txt:2: label 4 is outside \[0, 4\)"):
        read_list_file(f, num_classes=4)
    assert read_list_file(f, num_classes=5)[1].tolist() == [0, 4]
    with pytest.raises(ValueError, match="not both"):
        read_list_file(f, num_classes=5, open_set=True)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        read_list_file(f, num_classes=0)
    with pytest.raises(ListFileError, match="open-set list"):
        ListDataset(f, tmp_path, open_set=True, check_files=False)


@pytest.fixture
def list_config(tmp_path):
    """A digits config reading 6 classes from list files (4 train, 1 val, 1 test image each)."""
    d = digits_lt()
    files = {}
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        images, labels = d.split(split)
        lines = []
        for k in range(6):
            for j in np.flatnonzero(labels == k)[:n]:
                Image.fromarray(np.asarray(images[j])).save(tmp_path / f"{split}_{j}.png")
                lines.append(f"{split}_{j}.png {k}")
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text("\n".join(lines) + "\n")
    for j in range(3):
        Image.fromarray(np.asarray(d.open_images[j])).save(tmp_path / f"open_{j}.png")
    files["open"] = tmp_path / "open.txt"
    files["open"].write_text("".join(f"open_{j}.png -1\n" for j in range(3)))

    def make(*extra):
        sets = [f"data.{k}_list={v}" for k, v in files.items()]
        return load_config("digits_lt_stage1", ["progress=false", "device=cpu", "data.source=lists",
                                                f"data.root={tmp_path}", f"out_dir={tmp_path / 'run'}",
                                                "batch_size=4", "epochs=1", *sets, *extra])
    return make, files


def test_list_splits_labels_are_checked_by_split(list_config):
    make, files = list_config
    assert len(build_data(make()).open) == 3
    files["open"].write_text("open_0.png -1\nopen_1.png 2\n")
    with pytest.raises(ConfigError, match=r"data.open_list: .*open.txt:2: label 2 in an open-set list"):
        build_data(make())
    files["open"].write_text("open_0.png -1\n")
    for split, bad in (("val", "6"), ("test", "-1"), ("val", "17")):
        original = files[split].read_text()
        files[split].write_text(original.replace(" 5\n", f" {bad}\n", 1))
        with pytest.raises(ConfigError, match=rf"data.{split}_list: .*{split}.txt:6: label {bad} is outside "
                                              r"\[0, 6\).*\(model.num_classes is 6\)"):
            build_data(make())
        files[split].write_text(original)
    files["val"].write_bytes(b"val_\xff.png 0\n")
    with pytest.raises(ConfigError, match=r"data.val_list: .*val.txt:1: not UTF-8"):
        build_data(make())


# -- 4. an empty training (or validation) split stops before training ------------------------

@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_train_list_is_one_clear_error(list_config, content):
    make, files = list_config
    files["train"].write_text(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no scheduler warning, no other warning first
        with pytest.raises(ConfigError, match=r"the train split is empty: data.train_list .*train.txt lists no usable"):
            train(make())
    assert not (files["train"].parent / "run" / "last.pt").exists()


def test_all_images_skipped_is_an_empty_train_split(list_config):
    make, files = list_config
    for line in files["train"].read_text().split():
        if line.endswith(".png"):
            (files["train"].parent / line).write_bytes(b"\xff\xd8 truncated")
    with pytest.warns(UserWarning, match="skipped 24 of 24"), \
            pytest.raises(ConfigError, match=r"train split is empty: .*\(24 unreadable images were skipped\)"):
        build_data(make("data.skip_missing=true"))


def test_empty_val_list_is_one_clear_error(list_config):
    make, files = list_config
    files["val"].write_text("")
    with pytest.raises(ConfigError, match=r"the val split is empty: data.val_list .*val.txt"):
        build_data(make())


def test_data_bundle_rejects_short_counts():
    bundle = build_data(load_config("digits_lt_stage1", ["device=cpu"]))
    with pytest.raises(ValueError, match=r"train_counts must hold one count per class \(6 classes\), got shape \(4,\)"):
        DataBundle(bundle.train, bundle.train_plain, bundle.val, bundle.test, bundle.open,
                   bundle.train_labels, (1, 2, 3, 4), bundle.class_names)
    with pytest.raises(ValueError, match="non-negative"):
        DataBundle(bundle.train, bundle.train_plain, bundle.val, bundle.test, bundle.open,
                   bundle.train_labels, (1, 2, 3, 4, 5, -6), bundle.class_names)

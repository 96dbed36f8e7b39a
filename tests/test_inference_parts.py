"""Parts of the inference path without a trained model: class means (one helper for every
caller), decisions, the classes file, input layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from oltr.data.class_names import (
    ClassNamesError,
    default_class_names,
    find_classes_file,
    read_class_names,
)
from oltr.inference import ClassMeanAccumulator, Rejection
from oltr.inference.inputs import InputError, split_uint8


def test_class_mean_accumulator_streams_exact_means(rng):
    features = torch.from_numpy(rng.normal(size=(50, 3)) * 1e3)
    labels = torch.from_numpy(rng.integers(0, 4, 50))
    acc = ClassMeanAccumulator(4)
    for start in range(0, 50, 7):  # any batching gives the float64 sums of the whole set
        acc.add(features[start:start + 7], labels[start:start + 7])
    expected = torch.stack([features[labels == k].mean(0) for k in range(4)]).float()
    torch.testing.assert_close(acc.means(), expected)
    assert acc.counts.tolist() == torch.bincount(labels, minlength=4).tolist()


def test_every_class_mean_caller_uses_the_one_helper(monkeypatch, rng):
    """oltr.scores.class_means and oltr.compute_centroids go through ClassMeanAccumulator."""
    import oltr.inference.class_means as helper
    from oltr.model import compute_centroids
    from oltr.scores import class_means

    calls = []
    real = helper.ClassMeanAccumulator.means

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(helper.ClassMeanAccumulator, "means", counted)
    features = torch.from_numpy(rng.normal(size=(12, 4)).astype(np.float32))
    labels = torch.arange(12) % 3
    by_scores = class_means(features, labels, 3)
    by_model = compute_centroids(torch.nn.Identity(), [(features[:5], labels[:5]), (features[5:], labels[5:])], 3)
    torch.testing.assert_close(by_scores, by_model)
    assert len(calls) == 2


@pytest.mark.parametrize("fallback, expected_row", [("zeros", [0.0, 0.0]), ("global_mean", [2.0, 3.0])])
def test_class_mean_fallbacks_and_errors(fallback, expected_row):
    acc = ClassMeanAccumulator(3)
    acc.add(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([0, 2]))
    assert acc.means(fallback)[1].tolist() == expected_row
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have no sample in the loader; pass fallback"):
        acc.means(where=" in the loader")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got 3"):
        acc.add(torch.zeros(1, 2), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got -1"):
        acc.add(torch.zeros(1, 2), torch.tensor([-1]))
    with pytest.raises(ValueError, match="no batch was seen"):
        ClassMeanAccumulator(2).means()
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ClassMeanAccumulator(0)


def test_rejection_rules():
    scores = {"msp": np.array([-0.9, -0.5, -0.05]), "energy": np.array([1.0, 2.0, 3.0])}
    assert Rejection("val", "msp", -0.6).unknown(scores).tolist() == [False, True, True]
    # the official rule: max softmax < 0.1 <=> msp outlier score > -0.1
    assert Rejection.official(0.1).unknown(scores).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="only"):
        Rejection("val", "reachability", 0.0).unknown(scores)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            Rejection("val", "msp", bad)
    with pytest.raises(ValueError, match="rule must be one of val, official"):
        Rejection("mine", "msp", 0.0)
    stored = {"thresholds": {"msp": -0.4, "energy": 2.5, "open_threshold": 0.1}}
    assert Rejection.from_checkpoint(stored) == Rejection("val", "msp", -0.4)  # written before `rejection`
    assert Rejection.from_checkpoint({**stored, "rejection": {"rule": "val", "score": "energy", "threshold": 2.5}}) \
        == Rejection("val", "energy", 2.5)
    assert Rejection.from_checkpoint(stored, rule="official") == Rejection("official", "msp", -0.1)
    with pytest.raises(ValueError, match="no validation threshold for score 'open_threshold'"):
        Rejection.from_checkpoint(stored, score="open_threshold")
    with pytest.raises(ValueError, match="thresholds the max softmax"):
        Rejection.from_checkpoint(stored, rule="official", score="energy")


def test_classes_file(tmp_path):
    (tmp_path / "classes.txt").write_text("cat\n  dog \nbird\n\n")
    assert read_class_names(tmp_path / "classes.txt", 3) == ["cat", "dog", "bird"]
    assert find_classes_file([None, "", tmp_path / "nowhere", tmp_path]) == tmp_path / "classes.txt"
    assert find_classes_file([tmp_path / "nowhere"]) is None
    assert default_class_names(2) == ["class_0", "class_1"]
    with pytest.raises(ClassNamesError, match=r"classes.txt: 3 class names for 4 classes"):
        read_class_names(tmp_path / "classes.txt", 4)
    (tmp_path / "gap.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ClassNamesError, match=r"gap.txt:2: blank line"):
        read_class_names(tmp_path / "gap.txt")
    (tmp_path / "twice.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ClassNamesError, match=r"twice.txt:3: class name 'cat' repeats line 1"):
        read_class_names(tmp_path / "twice.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ClassNamesError, match=r"latin1.txt: not UTF-8"):
        read_class_names(tmp_path / "latin1.txt")


def test_list_data_takes_its_class_names_from_classes_txt(tmp_path):
    from PIL import Image

    from oltr.train import load_config
    from oltr.train.data import build_data

    (tmp_path / "img").mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.png")
    lines = "".join(f"{i}.png {i % 2}\n" for i in range(4))
    for name in ("train", "val", "test"):
        (tmp_path / f"{name}.txt").write_text(lines)
    sets = ["data.source=lists", f"data.root={tmp_path / 'img'}", "model.num_classes=2"] + [
        f"data.{name}_list={tmp_path / f'{name}.txt'}" for name in ("train", "val", "test")]
    config = load_config("digits_lt_stage1", sets)
    assert build_data(config).class_names == ["class_0", "class_1"]
    (tmp_path / "img" / "classes.txt").write_text("dark\nlight\n")  # in data.root
    assert build_data(config).class_names == ["dark", "light"]
    (tmp_path / "classes.txt").write_text("first\nsecond\n")  # beside the lists: preferred
    assert build_data(config).class_names == ["first", "second"]
    (tmp_path / "classes.txt").write_text("only one\n")
    with pytest.raises(ClassNamesError, match="1 class names for 2 classes"):
        build_data(config)


@pytest.mark.parametrize("shape, count, image_shape", [
    ((8, 8), 1, (8, 8)), ((8, 8, 3), 1, (8, 8, 3)), ((5, 8, 8), 5, (8, 8)),
    ((5, 8, 8, 3), 5, (8, 8, 3)), ((5, 3, 8, 8), 5, (8, 8, 3)), ((5, 8, 8, 1), 5, (8, 8, 1)),
])
def test_uint8_layouts(shape, count, image_shape):
    parts = split_uint8(np.zeros(shape, np.uint8))
    assert len(parts) == count and parts[0].shape == image_shape


def test_bad_uint8_layout():
    with pytest.raises(InputError, match=r"got shape \(2, 5, 8, 8\)"):
        split_uint8(np.zeros((2, 5, 8, 8), np.uint8))

"""Enrollment end to end on a small trained digits model: Predictor.enroll / forget / save and
``oltr enroll`` then ``oltr predict`` on the new checkpoint."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from oltr.cli import main
from oltr.inference import Predictor
from oltr.inference.inputs import InputError
from oltr.train import load_config, load_model_checkpoint, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("enroll")
    config = ["progress=false", "device=cpu"]
    first = train(load_config("digits_lt_stage1", [*config, f"out_dir={root / 's1'}"]))
    second = train(load_config("digits_lt_stage2", [*config, f"out_dir={root / 's2'}",
                                                    f"model.init={first.best_path}"]))
    return first.best_path, second.best_path


def _digit(target: int) -> np.ndarray:
    """uint8 8x8 images of one sklearn digit (scaled as digits_lt scales them)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images[digits.target == target]


def _write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("stage", [0, 1], ids=["plain", "oltr"])
def test_enroll_predicts_the_new_class_for_its_examples(runs, stage, tmp_path):
    ckpt = runs[stage]
    predictor = Predictor.from_checkpoint(ckpt, "cpu")
    sevens = _digit(7)[:10]
    before = predictor.predict(_digit(0)[:20])
    label = predictor.enroll(sevens, "seven")
    assert label == 6 and predictor.class_names[-1] == "seven" and predictor.model.num_classes == 7
    result = predictor.predict(sevens)
    assert result.probabilities.shape == (10, 7)
    assert (result.closed_labels == 6).mean() >= 0.9
    # (how many original images the new class takes: docs/enrollment.md measures it)
    if predictor.runner.memory is not None:  # plain: the reachability reads the enlarged class means
        assert predictor.runner.memory.shape[0] == 7
    # save: a new checkpoint with the enlarged model and its names; never the input
    new = tmp_path / "new.pt"
    with pytest.raises(ValueError, match="refusing to overwrite"):
        predictor.save(ckpt)
    predictor.save(new)
    saved = load_model_checkpoint(new)
    assert saved["class_names"] == [*load_model_checkpoint(ckpt)["class_names"], "seven"]
    assert saved["train_class_counts"][-1] == 10
    assert saved["enrolled"] == [{"label": 6, "name": "seven", "examples": 10}]
    reloaded = Predictor.from_checkpoint(new, "cpu")
    again = reloaded.predict(sevens)
    np.testing.assert_array_equal(again.closed_labels, result.closed_labels)
    np.testing.assert_allclose(again.probabilities, result.probabilities, atol=1e-6)
    # forget: back to the original classes (labels of later classes would move down)
    reloaded.forget(6)
    assert reloaded.class_names == load_model_checkpoint(ckpt)["class_names"]
    np.testing.assert_array_equal(reloaded.predict(_digit(0)[:20]).closed_labels, before.closed_labels)


def test_predictor_enrollment_errors(runs, tmp_path):
    predictor = Predictor.from_checkpoint(runs[1], "cpu")
    wrong_size = _write_pngs(tmp_path / "big", [np.zeros((16, 16), np.uint8)])
    with pytest.raises(InputError, match=r"enrollment image .*000.png: 16x16 with 1 channel\(s\) does not match"):
        predictor.enroll(wrong_size, "x")
    with pytest.raises(InputError, match="no examples given"):
        predictor.enroll([], "x")
    with pytest.raises(InputError, match="input not found"):
        predictor.enroll([tmp_path / "missing.png"], "x")
    with pytest.raises(InputError, match="already class 0"):
        predictor.enroll(_digit(7)[:2], "0")
    with pytest.raises(InputError, match="x contains NaN"):
        predictor.enroll(np.full((2, predictor.model.feat_dim), np.nan, np.float32), "x")
    with pytest.raises(InputError, match="feature dimension D=3"):
        predictor.enroll(np.zeros((2, 3), np.float32), "x")
    with pytest.raises(InputError, match="label 6 is unknown"):
        predictor.forget(6)
    assert predictor.model.num_classes == 6 and len(predictor.class_names) == 6


def test_cli_enroll_then_predict_knows_the_class(runs, tmp_path, capsys):
    ckpt = runs[1]
    digest = _sha(ckpt)
    pngs = _write_pngs(tmp_path / "sevens", _digit(7)[:10])
    new = tmp_path / "new.pt"
    assert main(["enroll", str(ckpt), "--images", *map(str, pngs), "--name", "seven", "-o", str(new),
                 "--device", "cpu"]) == 0
    assert "enrolled 'seven' as label 6 from 10 image(s)" in capsys.readouterr().err
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(new), *map(str, pngs), "-o", str(out), "--device", "cpu"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(r["closed_label"] == 6 for r in records) >= 9
    assert {r["class_name"] for r in records if r["label"] == 6} == {"seven"}
    # --list, relative to the list's folder; output equal to an input is refused
    listing = tmp_path / "sevens" / "list.txt"
    listing.write_text("# the sevens\n" + "".join(f"{p.name} 7\n" for p in pngs))
    other = tmp_path / "other.pt"
    assert main(["enroll", str(ckpt), "--list", str(listing), "--name", "7s", "-o", str(other),
                 "--device", "cpu", "--imprint", "calibrated"]) == 0
    enlarged = load_model_checkpoint(other)
    assert enlarged["class_names"][-1] == "7s"
    # the calibrated row differs from the mean one (same memory and hallucinator rows)
    mean_state = load_model_checkpoint(new)["state_dict"]
    assert torch.equal(enlarged["state_dict"]["centroids"], mean_state["centroids"])
    key = "classifier.cosnorm_classifier.weight"
    assert not torch.allclose(enlarged["state_dict"][key][6], mean_state[key][6])
    capsys.readouterr()
    assert main(["enroll", str(ckpt), "--images", str(pngs[0]), "--name", "x", "-o", str(ckpt)]) == 1
    assert "refusing to overwrite an input" in capsys.readouterr().err
    assert main(["enroll", str(ckpt), "--list", str(listing), "--name", "x", "-o", str(listing)]) == 1
    assert main(["enroll", str(ckpt), "--images", str(pngs[0]), "--name", "x", "-o", str(pngs[0])]) == 1
    assert _sha(ckpt) == digest
    # bad inputs: one line each
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    assert main(["enroll", str(ckpt), "--list", str(empty), "--name", "x", "-o", str(tmp_path / "e.pt")]) == 1
    assert "no examples given" in capsys.readouterr().err
    # a missing image is reported before the checkpoint is even read
    assert main(["enroll", str(tmp_path / "no.pt"), "--images", str(tmp_path / "no.png"), "--name", "x",
                 "-o", str(tmp_path / "e.pt")]) == 1
    assert "input not found" in capsys.readouterr().err
    assert main(["enroll", str(ckpt), "--images", str(pngs[0]), "-o", str(tmp_path / "e.pt")]) == 2
    assert not (tmp_path / "e.pt").exists()
    assert load_model_checkpoint(ckpt)["centroids"].shape[0] == 6  # the input is untouched

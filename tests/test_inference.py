"""The one inference path: every consumer gives the same report schema, Predictor equals
``oltr predict``, the nearest-centroid index is built once per model, and the CLI as a user
with their own images meets it (lists with unknowns, open lists, --root, --set, size warnings)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import oltr
from oltr.cli import main
from oltr.datasets import digits_lt
from oltr.inference import Outputs, Predictor, Rejection, evaluate_checkpoint
from oltr.inference.inputs import InputMismatchWarning
from oltr.metrics import evaluate
from oltr.train import load_config, load_model_checkpoint, train


def _config(name, out, *extra):
    return load_config(name, ["progress=false", "device=cpu", f"out_dir={out}", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    first = train(_config("digits_lt_stage1", root / "s1", "epochs=1"))
    second = train(_config("digits_lt_stage2", root / "s2", "epochs=1", f"model.init={first.best_path}"))
    return {"plain": first.best_path, "oltr": second.best_path, "root": root}


@pytest.fixture(scope="module")
def images(runs):
    """PNG files of 4 known test images and 3 open-set images, the same pixels as arrays,
    and list files: test.txt (labels, two rows -1), open.txt (all -1)."""
    from PIL import Image

    data = digits_lt()
    folder = runs["root"] / "imgs"
    folder.mkdir()
    arrays = np.concatenate([data.test_images[:4], data.open_images[:3]])
    labels = np.concatenate([data.test_labels[:4], -np.ones(3, np.int64)])
    paths = []
    for i, image in enumerate(arrays):
        Image.fromarray(image).save(folder / f"{i}.png")
        paths.append(folder / f"{i}.png")
    (folder / "test.txt").write_text("".join(f"{i}.png {int(y)}\n" for i, y in enumerate(labels[:6])))
    (folder / "open.txt").write_text("\n5.png -1\n6.png -1\n")
    return {"folder": folder, "paths": paths, "arrays": arrays, "labels": labels}


def _keys(tree, prefix=""):
    """Every key path of a nested report except the contents of ``meta``."""
    if not isinstance(tree, dict):
        return {prefix}
    out = {prefix}
    for k, v in tree.items():
        out |= {f"{prefix}/meta"} if k == "meta" else _keys(v, f"{prefix}/{k}")
    return out


@pytest.mark.parametrize("stage", ["plain", "oltr"])
def test_one_report_schema_for_eval_json_evaluate_and_the_trainer(runs, tmp_path, stage, capsys):
    best = runs[stage]
    assert main(["eval", str(best), "--open", "--device", "cpu", "--json", str(tmp_path / "r.json")]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "r.json").read_text())
    report, outputs, checkpoint = evaluate_checkpoint(best, open_set=True, device="cpu", return_outputs=True)
    thresholds = {k: v for k, v in checkpoint["thresholds"].items() if k != "open_threshold"}
    api = evaluate(outputs.logits, outputs.labels, checkpoint["train_class_counts"],
                   scores={"reachability": -outputs.reachability}, reject_thresholds=thresholds)
    trainer = checkpoint["val_report"]
    assert _keys(written) == _keys(report) == _keys(api) == _keys(trainer)
    assert set(written["modern"]) == {"msp", "max_logit", "energy", "reachability"}
    assert written["schema"] == api["schema"] == trainer["schema"] == "oltr.report/1"
    assert written["closed"]["top1"] == pytest.approx(api["closed"]["top1"])
    assert written["modern"]["reachability"]["auroc"] == pytest.approx(api["modern"]["reachability"]["auroc"])


def test_reachability_is_the_forward_pass_one(runs):
    """The oltr stage's reachability is the classifier's (not recomputed); the plain stage's
    is against the stored class means."""
    from oltr.memory import reachability

    for stage in ("plain", "oltr"):
        predictor = Predictor.from_checkpoint(runs[stage], "cpu")
        x = torch.randn(6, predictor.model.feat_dim, generator=torch.Generator().manual_seed(0))
        got = predictor.predict_features(x)
        expected = reachability(x.numpy(), predictor.model.centroids.numpy(), scale=predictor.model.reach_scale)
        np.testing.assert_allclose(-got.scores["reachability"], expected, rtol=1e-5)


@pytest.fixture
def count_index_builds(monkeypatch):
    import oltr.memory
    from oltr.nn._nearest import rust_core_available

    if not rust_core_available():
        pytest.skip("the Rust core is not importable")
    builds = []

    class Counting(oltr.memory.CentroidIndex):
        def __init__(self, *args, **kwargs):
            builds.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(oltr.memory, "CentroidIndex", Counting)
    return builds


@pytest.mark.parametrize("stage", ["plain", "oltr"])
def test_the_index_is_built_once_per_model_across_batches(runs, images, count_index_builds, stage):
    predictor = Predictor.from_checkpoint(runs[stage], "cpu", batch_size=2)
    x = torch.randn(9, predictor.model.feat_dim, generator=torch.Generator().manual_seed(1))
    first = predictor.predict_features(x)           # 5 batches
    predictor.predict_features(x[:3])               # 2 more
    predictor.predict(images["paths"])              # 4 batches of images
    assert len(count_index_builds) == 1
    if stage == "oltr":  # the head's transposed weights (core path): built once too
        builds = predictor.model.classifier.cache_builds
        assert (builds["unit_weight"], builds["centroids_t"], builds["weights_t"]) == (0, 0, 3)
    again = Predictor.from_checkpoint(runs[stage], "cpu", batch_size=2)  # a new model: its own index
    np.testing.assert_array_equal(again.predict_features(x).labels, first.labels)
    assert len(count_index_builds) == 2


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rule", [None, "official"])
def test_predictor_equals_oltr_predict_on_images_and_features(runs, images, tmp_path, capsys, rule):
    best = runs["oltr"]
    predictor = Predictor.from_checkpoint(best, "cpu", rule=rule, batch_size=3)
    rule_args = ["--rule", rule] if rule else []
    # images (files)
    assert main(["predict", str(best), *map(str, images["paths"]), "-o", str(tmp_path / "img.jsonl"),
                 "--device", "cpu", "--batch-size", "3", *rule_args]) == 0
    by_cli = _jsonl(tmp_path / "img.jsonl")
    by_api = predictor.predict(images["paths"])
    assert by_cli == json.loads(json.dumps(list(by_api.records())))
    # the same pixels as an array, and as a list file, give the same predictions
    by_array = predictor.predict(images["arrays"])
    np.testing.assert_array_equal(by_array.labels, by_api.labels)
    np.testing.assert_allclose(by_array.probabilities, by_api.probabilities, rtol=1e-6)
    assert main(["predict", str(best), str(images["folder"] / "test.txt"), "-o", str(tmp_path / "list.jsonl"),
                 "--device", "cpu", *rule_args]) == 0
    assert [r["label"] for r in _jsonl(tmp_path / "list.jsonl")] == by_api.labels[:6].tolist()
    # features (.npy)
    features = by_api.features
    np.save(tmp_path / "f.npy", features)
    assert main(["predict", str(best), str(tmp_path / "f.npy"), "-o", str(tmp_path / "f.jsonl"),
                 "--device", "cpu", "--batch-size", "3", *rule_args]) == 0
    by_features = predictor.predict_features(features, names=[f"{tmp_path / 'f.npy'}[{i}]" for i in range(7)])
    assert _jsonl(tmp_path / "f.jsonl") == json.loads(json.dumps(list(by_features.records())))
    np.testing.assert_array_equal(by_features.labels, by_api.labels)
    capsys.readouterr()


def test_prediction_fields_follow_the_stored_rejection(runs, images):
    predictor = Predictor.from_checkpoint(runs["oltr"], "cpu")
    result = predictor.predict(images["paths"])
    checkpoint = load_model_checkpoint(runs["oltr"])
    assert result.rejection == Rejection("val", "msp", checkpoint["thresholds"]["msp"])
    assert result.labels.dtype == np.int64 and result.closed_labels.dtype == np.int64 and result.unknown.dtype == bool
    np.testing.assert_array_equal(result.unknown, result.scores["msp"] > checkpoint["thresholds"]["msp"])
    np.testing.assert_array_equal(result.labels, np.where(result.unknown, -1, result.closed_labels))
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(-result.scores["msp"], result.probabilities.max(1), rtol=1e-6)
    assert result.class_names == list(digits_lt().class_names) and set(result.scores) == {
        "msp", "max_logit", "energy", "reachability"}
    assert result.label_names == ["unknown" if y == -1 else result.class_names[y] for y in result.labels]
    official = Predictor.from_checkpoint(runs["oltr"], "cpu", rule="official").predict(images["paths"])
    assert official.rejection == Rejection("official", "msp", -0.1) and not official.unknown.any()  # 6 classes
    energy = Predictor.from_checkpoint(runs["oltr"], "cpu", score="energy").predict(images["paths"])
    np.testing.assert_array_equal(energy.unknown, energy.scores["energy"] > checkpoint["thresholds"]["energy"])
    with pytest.raises(ValueError, match="no validation threshold for score 'nope'"):
        Predictor.from_checkpoint(runs["oltr"], "cpu", score="nope")
    assert oltr.Predictor is Predictor


def test_checkpoints_without_a_stored_rejection_still_load(runs, images, tmp_path):
    checkpoint = torch.load(runs["oltr"], weights_only=True)
    del checkpoint["rejection"], checkpoint["val_report"]
    torch.save(checkpoint, tmp_path / "old.pt")
    old = Predictor.from_checkpoint(tmp_path / "old.pt", "cpu").predict(images["paths"])
    new = Predictor.from_checkpoint(runs["oltr"], "cpu").predict(images["paths"])
    assert old.rejection == new.rejection
    np.testing.assert_array_equal(old.labels, new.labels)
    assert evaluate_checkpoint(tmp_path / "old.pt", device="cpu")["meta"]["rejection"]["score"] == "msp"


def _rgb(path, size):
    from PIL import Image

    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)
    return path


def test_predict_warns_once_when_size_or_channels_differ(runs, images, tmp_path, capsys):
    predictor = Predictor.from_checkpoint(runs["plain"], "cpu")
    predictor.predict(images["paths"])  # 8x8 grayscale, as in training: no warning (warnings are errors)
    rgb = [_rgb(tmp_path / f"rgb{i}.png", (8, 8)) for i in range(3)]  # channels differ
    with pytest.warns(InputMismatchWarning, match=r"8x8 with 3 channel\(s\).*8x8, 1 channel") as caught:  # noqa: PT031
        predictor.predict(rgb)
        predictor.predict(rgb)
    assert len(caught) == 1
    big = Predictor.from_checkpoint(runs["plain"], "cpu")
    with pytest.warns(InputMismatchWarning, match=r"12x10 with 1 channel") as caught:  # size differs
        big.predict(np.zeros((2, 10, 12), np.uint8))
    assert len(caught) == 1
    with pytest.warns(InputMismatchWarning) as caught:  # the command warns once too
        assert main(["predict", str(runs["plain"]), *map(str, rgb), "--device", "cpu"]) == 0
    assert len(caught) == 1
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_eval_a_test_list_with_unknown_rows_and_an_open_list(runs, images, tmp_path, capsys):
    best, folder = runs["oltr"], images["folder"]
    out = tmp_path / "r.json"
    args = ["eval", str(best), "--test-list", str(folder / "test.txt"), "--json", str(out), "--device", "cpu"]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert (report["num_known"], report["num_unknown"]) == (4, 2)  # rows labelled -1 count as unknown
    assert report["meta"]["data"]["test_list"] == str(folder / "test.txt")
    assert main(["eval", str(best), "--test-list", str(folder / "test.txt"), "--open-list", str(folder / "open.txt"),
                 "--json", str(out), "--device", "cpu"]) == 0
    both = json.loads(out.read_text())
    assert (both["num_known"], both["num_unknown"]) == (4, 4)
    assert f"data {folder / 'test.txt'} + {folder / 'open.txt'}" in capsys.readouterr().out  # the table names them
    # the same numbers as the outputs of those images through the Predictor
    result = Predictor.from_checkpoint(best, "cpu").predict(images["paths"][:6] + images["paths"][5:7])
    labels = np.r_[images["labels"][:6], -1, -1]
    api = evaluate(result.logits, labels, load_model_checkpoint(best)["train_class_counts"])
    assert both["modern"]["msp"]["auroc"] == pytest.approx(api["modern"]["msp"]["auroc"])
    assert both["closed"]["top1"] == pytest.approx(api["closed"]["top1"])


def test_eval_root_and_set(runs, images, tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "mine.txt").write_text((images["folder"] / "test.txt").read_text())
    out = tmp_path / "r.json"
    assert main(["eval", str(runs["oltr"]), "--test-list", str(lists / "mine.txt"), "--json", str(out),
                 "--device", "cpu"]) == 1  # the images are not beside the list
    assert "not found" in capsys.readouterr().err
    assert main(["eval", str(runs["oltr"]), "--test-list", str(lists / "mine.txt"), "--root", str(images["folder"]),
                 "--set", "eval.open_threshold=0.5", "--set", "eval.batch_size=2", "--json", str(out),
                 "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["official"]["threshold"] == 0.5 and report["num_unknown"] == 2
    assert main(["eval", str(runs["oltr"]), "--set", "eval.nope=1"]) == 1
    assert "eval.nope" in capsys.readouterr().err


@pytest.mark.parametrize("option, text, line, match", [
    ("--open-list", "5.png -1\n\n6.png 2\n", 3, "every open-set image must be labelled -1"),
    ("--open-list", "5.png 0\n", 1, "every open-set image must be labelled -1"),
    ("--test-list", "0.png 0\n1.png 6\n", 2, "outside the model's 6 classes"),
])
def test_eval_list_label_errors_name_file_and_line(runs, images, option, text, line, match, capsys):
    bad = images["folder"] / f"bad_{line}.txt"
    bad.write_text(text)
    args = ["eval", str(runs["oltr"]), option, str(bad), "--device", "cpu"]
    if option == "--open-list":
        args += ["--test-list", str(images["folder"] / "test.txt")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("oltr: error: ") and f"{bad}:{line}:" in err and match in err


def test_eval_json_refuses_to_overwrite_an_input_list(runs, images, capsys):
    listed = images["folder"] / "test.txt"
    before = listed.read_text()
    assert main(["eval", str(runs["oltr"]), "--test-list", str(listed), "--json", str(listed), "--device", "cpu"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err and listed.read_text() == before


def test_outputs_concat_and_empty():
    a = Outputs(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32), np.array([0, -1]), np.ones(2, np.float32))
    b = Outputs.empty(3, 4, with_reachability=True)
    both = Outputs.concat([a, b, a])
    assert len(both) == 4 and both.reachability.shape == (4,) and both.labels.tolist() == [0, -1, 0, -1]
    assert Outputs.concat([a, Outputs.empty(3, 4, with_reachability=False)]).reachability is None
    with pytest.raises(ValueError, match="empty dataset"):
        Outputs.concat([])


def test_the_command_warns_in_one_stderr_line(runs, images, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    rgb = [_rgb(tmp_path / f"rgb{i}.png", (9, 9)) for i in range(2)]
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "python") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "oltr", "predict", str(runs["plain"]), *map(str, rgb),
                           str(images["paths"][0]), "--device", "cpu"], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "warning" in line.lower()]
    assert len(warned) == 1 and warned[0].startswith("oltr: warning: ")
    assert "rgb0.png: 9x9 with 3 channel(s)" in warned[0]
    assert len(proc.stdout.splitlines()) == 3


def test_every_input_kind_gives_the_same_predictions(runs, images):
    from PIL import Image

    from oltr.inference.inputs import InputError

    predictor = Predictor.from_checkpoint(runs["oltr"], "cpu")
    by_path = predictor.predict(images["paths"])
    arrays = images["arrays"]
    transformed = torch.from_numpy(arrays[:, None].astype(np.float32) / 255.0)  # the 'none' transform's tensor
    kinds = {
        "str path": predictor.predict([str(p) for p in images["paths"]]),
        "uint8 array": predictor.predict(arrays),
        "uint8 (N, H, W, 1)": predictor.predict(arrays[..., None]),
        "uint8 tensor": predictor.predict(torch.from_numpy(arrays)),
        "PIL images": predictor.predict([Image.open(p) for p in images["paths"]]),
        "model inputs": predictor.predict(transformed),
        "features": predictor.predict(torch.from_numpy(by_path.features)),
    }
    for kind, result in kinds.items():
        np.testing.assert_array_equal(result.labels, by_path.labels, err_msg=kind)
        np.testing.assert_allclose(result.probabilities, by_path.probabilities, rtol=1e-5, atol=1e-6, err_msg=kind)
    single = predictor.predict(images["paths"][0])  # one path
    assert len(single) == 1 and single.inputs == [str(images["paths"][0])]
    assert predictor.predict(np.zeros((0, predictor.model.feat_dim), np.float32)).labels.shape == (0,)
    for bad, match in [(np.zeros((2, 5), np.float32), r"expected features \(N, 64\)"),
                       (torch.zeros(2, 3, 4), "a float tensor must be"), ([], "no inputs"),
                       ([images["folder"] / "missing.png"], "input not found"),
                       (np.full((1, 64), np.nan, np.float32), "NaN or Inf")]:
        with pytest.raises(InputError, match=match):
            predictor.predict(bad)

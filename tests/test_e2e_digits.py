"""End to end on the embedded digits: stage 1 → stage 2 → eval → predict."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oltr.datasets import digits_lt
from oltr.inference import evaluate_checkpoint
from oltr.model import compute_centroids
from oltr.predict import InputError, predict
from oltr.train import load_config, load_model_checkpoint, train
from oltr.train.data import eval_loader
from oltr.train.restore import load_trained_model
from oltr.train.trainer import _Run


def _config(name, out, *extra):
    return load_config(name, ["progress=false", "device=cpu", f"out_dir={out}", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    first = train(_config("digits_lt_stage1", root / "s1", "epochs=3"))
    second = train(_config("digits_lt_stage2", root / "s2", "epochs=2", f"model.init={first.best_path}"))
    return root, first, second


def _log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_folder_and_best_checkpoint(runs):
    root, first, second = runs
    for result, epochs in ((first, 3), (second, 2)):
        assert {"best.pt", "last.pt", "log.jsonl", "config.yaml"} <= {p.name for p in result.out_dir.iterdir()}
        epochs_logged = [r for r in _log(result.out_dir / "log.jsonl") if r["event"] == "epoch"]
        assert [r["epoch"] for r in epochs_logged] == list(range(1, epochs + 1))
        accs = [r["val_top1"] for r in epochs_logged]
        assert result.best_acc == max(accs) and result.best_epoch == 1 + int(np.argmax(accs))
        ckpt = load_model_checkpoint(result.best_path)
        assert ckpt["epoch"] == result.best_epoch and ckpt["best_acc"] == result.best_acc
        assert ckpt["train_class_counts"] == [120, 60, 30, 15, 8, 4]
        assert ckpt["class_names"] == list(digits_lt().class_names)
        scores = {"msp", "max_logit", "energy", "reachability"}
        assert set(ckpt["thresholds"]) == scores | {f"{s}@groups" for s in scores} | {"open_threshold"}
        assert set(ckpt["thresholds"]["msp@groups"]) == {"many", "medium", "few"}
        # the rejection predict applies by default: the msp threshold chosen on val
        assert ckpt["rejection"] == {"rule": "val", "score": "msp", "threshold": ckpt["thresholds"]["msp"]}
        report = ckpt["val_report"]  # the trainer's validation report: the best epoch's val outputs
        assert report["meta"]["split"] == "val" and report["meta"]["epoch"] == result.best_epoch
        assert report["closed"]["top1"] == pytest.approx(result.best_acc) and report["num_unknown"] == 0
        assert report["reject"]["msp"]["rejected_known"] == pytest.approx(0.05, abs=0.02)  # val_keep 0.95
        for frr in report["reject"]["msp@groups"]["rejected_known_groups"].values():  # each group keeps ~95 %
            assert frr == pytest.approx(0.05, abs=0.06)
    plain, oltr = load_model_checkpoint(first.best_path), load_model_checkpoint(second.best_path)
    assert plain["centroids"] is None and tuple(plain["feature_means"].shape) == (6, 64)
    assert torch.equal(oltr["centroids"], oltr["state_dict"]["centroids"])
    # the best weights are the ones that scored best_acc on val
    model, _ = load_trained_model(second.best_path)
    acc = evaluate_checkpoint(second.best_path, split="val", device="cpu")["closed"]["top1"]
    assert acc == pytest.approx(second.best_acc)
    assert model.stage == "oltr"


def test_stage2_initialisation_follows_the_official_recipe(runs, tmp_path):
    _, first, _ = runs
    run = _Run(_config("digits_lt_stage2", tmp_path, f"model.init={first.best_path}", "centroids.repel_margin=3",
                       "centroids.gradient=autograd"), torch.device("cpu"))
    assert (run.criterion.repel_margin, run.criterion.repel_weight, run.criterion.gradient) == (3.0, 0.01, "autograd")
    run.initialise()
    stage1 = load_model_checkpoint(first.best_path)["state_dict"]
    # fc_hallucinator <- stage-1 fc; backbone keys present in stage 1 copied; attention fresh
    assert torch.equal(run.model.classifier.fc_hallucinator.weight, stage1["classifier.fc.weight"])
    assert torch.equal(run.model.classifier.fc_hallucinator.bias, stage1["classifier.fc.bias"])
    assert torch.equal(run.model.feat_model.layer1[0].weight, stage1["feat_model.layer1.0.weight"])
    assert not any(k.startswith("feat_model.modulatedatt") for k in stage1)
    # memory = class means of the stage-2 network's train features (eval transforms)
    means = compute_centroids(run.model, eval_loader(run.config, run.data.train_plain), 6)
    assert torch.allclose(run.criterion.centroids, means, atol=1e-6)
    assert torch.equal(run.model.centroids, run.criterion.centroids.detach())


def test_eval_open_set(runs):
    _, _, second = runs
    metrics = evaluate_checkpoint(second.best_path, open_set=True, device="cpu")
    assert (metrics["num_known"], metrics["num_unknown"]) == (240, 160)
    # with 6 classes the official 0.1 threshold rejects nothing (docs/official-differences.md D7)
    assert metrics["official"]["rejected_known"] == 0.0 and metrics["official"]["open_set_accuracy"] == 0.0
    assert metrics["official"]["top1"] == pytest.approx(metrics["closed"]["top1"])
    val = metrics["reject"]["msp"]
    assert val["threshold"] == pytest.approx(metrics["meta"]["thresholds"]["msp"])
    assert metrics["meta"]["rejection"] == {"rule": "val", "score": "msp", "threshold": val["threshold"]}
    assert 0.0 < val["open_set_accuracy"] <= 1.0
    for name in ("msp", "max_logit", "energy", "reachability"):
        block = metrics["modern"][name]
        assert 0.0 <= block["auroc"] <= 1.0 and set(block["groups"]) == {"many", "medium", "few"}


def test_predict_features_images_and_files(runs, tmp_path):
    _, _, second = runs
    model, ckpt = load_trained_model(second.best_path)
    data = digits_lt()
    images = data.open_images[:5]
    with torch.no_grad():
        from oltr.data import ArrayDataset

        x = ArrayDataset(images).tensors()[0]
        logits, extras = model(x)
    np.save(tmp_path / "feat.npy", extras.direct.numpy())
    np.save(tmp_path / "img.npy", images)
    by_feat = list(predict(second.best_path, [tmp_path / "feat.npy"], device="cpu"))
    by_img = list(predict(second.best_path, [tmp_path / "img.npy"], device="cpu"))
    assert len(by_feat) == len(by_img) == 5
    expected = logits.argmax(1).tolist()
    assert [r["closed_label"] for r in by_feat] == [r["closed_label"] for r in by_img] == expected
    top = torch.softmax(logits, 1).amax(1)
    assert [r["max_softmax"] for r in by_feat] == pytest.approx(top.tolist(), abs=1e-5)
    for r in by_feat:
        assert r["unknown"] == (r["scores"]["msp"] > ckpt["thresholds"]["msp"])
        assert (r["label"] == -1) == r["unknown"]
        assert r["class_name"] == ("unknown" if r["unknown"] else ckpt["class_names"][r["label"]])
    from PIL import Image

    for i in range(2):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    (tmp_path / "list.txt").write_text("0.png -1\n1.png -1\n")
    by_file = list(predict(second.best_path, [tmp_path / "0.png", tmp_path / "1.png"], device="cpu"))
    by_list = list(predict(second.best_path, [tmp_path / "list.txt"], device="cpu"))
    assert [r["closed_label"] for r in by_file] == [r["closed_label"] for r in by_list] == expected[:2]
    official = list(predict(second.best_path, [tmp_path / "feat.npy"], device="cpu", rule="official"))
    assert not any(r["unknown"] for r in official)  # max softmax >= 1/6 > 0.1
    np.save(tmp_path / "bad.npy", np.zeros((3, 5), np.float32))
    with pytest.raises(InputError, match=r"expected features \(N, 64\)"):
        list(predict(second.best_path, [tmp_path / "bad.npy"], device="cpu"))
    with pytest.raises(InputError, match="not a mix"):
        list(predict(second.best_path, [tmp_path / "feat.npy", tmp_path / "0.png"], device="cpu"))

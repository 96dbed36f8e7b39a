"""``oltr compare`` (issue 9): the spec, the methods' evaluation, the table, and digits-LT end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from oltr.cli import main
from oltr.compare import DETECTORS, METHODS, compare_spec, load_compare_spec
from oltr.compare.evaluation import fit_detectors, method_report
from oltr.compare.methods import MethodOutputs, logit_adjusted
from oltr.compare.table import format_table, report_row, summarise
from oltr.inference import Outputs, evaluate_checkpoint
from oltr.longtail import tune_tau
from oltr.train import ConfigError

_EVAL = {"open_threshold": 0.1, "val_keep": 0.95, "many_shot": 100, "few_shot": 20, "paper_groups": False}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """``oltr compare compare_digits_lt --quick`` with two seeds, through the command."""
    out = tmp_path_factory.mktemp("compare") / "out"
    assert main(["compare", "compare_digits_lt", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    return out, json.loads((out / "table.json").read_text())


def test_digits_end_to_end_writes_the_table(digits):
    out, table = digits
    spec = load_compare_spec("compare_digits_lt")
    assert table["methods"] == list(METHODS) == list(spec.methods) and table["seeds"] == [0, 1]
    markdown = (out / "table.md").read_text()
    for method in METHODS:
        assert f"| {METHODS[method][0]} |" in markdown
        rows = table["per_seed"][method]
        assert len(rows) == 2
        for column, stats in table["summary"][method].items():
            values = [r[column] for r in rows]
            if any(v is None for v in values):  # NaN in JSON: an undefined number
                continue
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["std"] == pytest.approx(np.std(values, ddof=1))
    for det in spec.detectors:
        assert f"**{DETECTORS[det]}**" in markdown
        assert (out / "plots" / f"roc_{det}.png").stat().st_size > 0
    assert (out / "plots" / "per_class_accuracy.png").stat().st_size > 0
    # τ of the post-hoc methods was chosen (on validation) and recorded per seed
    assert all("tau" in d for d in table["details"]["plain_la"] + table["details"]["tau_norm"])


def test_one_stage1_per_seed_shared_by_the_classifier_methods(digits):
    out, table = digits
    seed0 = out / "runs" / "seed0"
    trained = {p.name for p in seed0.iterdir() if (p / "best.pt").is_file()}
    assert trained == {"stage1", "oltr", "crt", "lws", "plain_equal_epochs", "balanced_softmax"}
    equal = yaml.safe_load((seed0 / "plain_equal_epochs" / "config.yaml").read_text())
    assert equal["epochs"] == 4  # stage 1 + OLTR epochs (2 + 2 in quick mode)
    assert yaml.safe_load((seed0 / "balanced_softmax" / "config.yaml").read_text())["loss"]["kind"] == \
        "balanced_softmax"
    for name in ("crt", "lws", "oltr"):
        init = yaml.safe_load((seed0 / name / "config.yaml").read_text())["model"]["init"]
        assert init == str(seed0 / "stage1" / "best.pt")
    reports = {m: json.loads((seed0 / "reports" / f"{m}.json").read_text()) for m in METHODS}
    # same features (shared or frozen backbone) -> same feature-detector rankings (OSCR also
    # depends on which known samples are classified right, so it may differ)
    def ranking(report, det):
        block = report["modern"][det]
        return [block["auroc"], block["fpr_at_tpr"]] + [block["groups"][g][k] for g in ("many", "medium", "few")
                                                         for k in ("auroc", "fpr_at_tpr")]

    for method in ("plain_la", "tau_norm", "ncm", "crt", "lws"):
        for det in ("knn", "mahalanobis", "reachability"):
            assert ranking(reports[method], det) == ranking(reports["plain"], det), (method, det)
    assert ranking(reports["oltr"], "knn") == ranking(reports["oltr_la"], "knn")
    assert ranking(reports["crt"], "msp") != ranking(reports["plain"], "msp")  # the classifier did change


def test_numbers_come_from_the_inference_path(digits):
    out, _ = digits
    seed0 = out / "runs" / "seed0"
    for method, run in (("plain", "stage1"), ("crt", "crt"), ("lws", "lws"), ("oltr", "oltr")):
        mine = json.loads((seed0 / "reports" / f"{method}.json").read_text())
        theirs = evaluate_checkpoint(seed0 / run / "best.pt", open_set=True, device="cpu")
        assert mine["closed"] == pytest.approx(dict(theirs["closed"]), nan_ok=True)
        for score in ("msp", "max_logit", "energy", "reachability"):
            assert mine["modern"][score]["auroc"] == pytest.approx(theirs["modern"][score]["auroc"])
        # the open F of the table is the report's, at the msp threshold chosen on val
        assert mine["reject"]["msp"]["threshold"] == pytest.approx(theirs["reject"]["msp"]["threshold"])
        assert mine["reject"]["msp"]["f_measure"] == pytest.approx(theirs["reject"]["msp"]["f_measure"])


def _synthetic(rng, far: float) -> MethodOutputs:
    """Two known classes around (±3, 0, 0, 0); unknown test samples at distance ``far``."""
    means = np.array([[3.0, 0, 0, 0], [-3.0, 0, 0, 0]])

    def known(n):
        labels = rng.integers(0, 2, n)
        return means[labels] + 0.3 * rng.standard_normal((n, 4)), labels

    weight, bias = np.array([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]]), np.zeros(2)

    def outputs(feats, labels):
        feats = feats.astype(np.float32)
        return Outputs(logits=(feats @ weight.T + bias).astype(np.float32), features=feats,
                       labels=labels.astype(np.int64))

    train_f, train_y = known(200)
    val_f, val_y = known(60)
    test_f, test_y = known(60)
    directions = rng.standard_normal((40, 4))
    unknown = far * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    test = outputs(np.vstack([test_f, unknown]), np.concatenate([test_y, -np.ones(40, np.int64)]))
    return MethodOutputs(outputs(val_f, val_y), test, outputs(train_f, train_y), (weight, bias), loaded=None)


@pytest.mark.parametrize("far", [50.0, 1000.0])
def test_far_outliers_score_higher_through_compare(far):
    method = _synthetic(np.random.default_rng(0), far)
    names = ["knn", "mahalanobis"]  # RMD (MD_k - MD_0) need not grow with distance along a class mean
    detectors = fit_detectors(names, method, knn_k=5)
    report = method_report(method, [150, 50], _EVAL, detectors)
    for name in names:
        assert report["modern"][name]["auroc"] == 1.0, name
        assert report["modern"][name]["fpr_at_tpr"] == 0.0, name
    row = report_row(report, names)
    assert row["knn.auroc.all"] == 1.0 and row["mahalanobis.fpr95.all"] == 0.0


def test_logit_adjustment_tau_is_chosen_on_validation_only():
    rng = np.random.default_rng(1)
    method = _synthetic(rng, 50.0)
    counts = [150, 5]
    adjusted = logit_adjusted(method, counts)
    assert adjusted.detail["tau"] == tune_tau(method.val.logits, method.val.labels, counts)[0]
    shuffled = MethodOutputs(method.val, Outputs(method.test.logits, method.test.features,
                                                 rng.permutation(method.test.labels)),
                             method.train, method.head, None)
    assert logit_adjusted(shuffled, counts).detail["tau"] == adjusted.detail["tau"]  # test labels unused
    shift = adjusted.detail["tau"] * np.log(np.array(counts) / sum(counts))
    np.testing.assert_allclose(adjusted.test.logits, method.test.logits - shift, rtol=1e-6)
    np.testing.assert_allclose(adjusted.head[1], method.head[1] - shift)


def test_vim_and_react_need_a_linear_head():
    method = _synthetic(np.random.default_rng(2), 50.0)
    assert fit_detectors(["vim", "react"], MethodOutputs(method.val, method.test, method.train, None, None)) == \
        {"vim": None, "react": None}
    report = method_report(method, [150, 50], _EVAL, fit_detectors(["vim", "react"], method, vim_dim=2))
    assert report["modern"]["vim"]["auroc"] > 0.9
    assert np.isnan(report_row({**report, "modern": {}}, ["vim"])["vim.auroc.all"])


def test_knn_k_above_the_training_set_is_named():
    method = _synthetic(np.random.default_rng(3), 50.0)
    with pytest.raises(ValueError, match="knn_k = 500"):
        fit_detectors(["knn"], method, knn_k=500)


def test_table_mean_std_and_missing_values():
    rows = [{"top1": 0.5, "many": 0.9, "medium": 0.5, "few": 0.1, "open_f": 0.4, "knn.auroc.all": float("nan")},
            {"top1": 0.7, "many": 0.9, "medium": 0.6, "few": 0.3, "open_f": 0.5, "knn.auroc.all": float("nan")}]
    summary = summarise(rows)
    assert summary["top1"] == {"mean": pytest.approx(0.6), "std": pytest.approx(np.std([0.5, 0.7], ddof=1))}
    assert summarise(rows[:1])["top1"]["std"] == 0.0
    text = format_table("t", {"plain": {**summary, **{f"knn.{m}.{g}": summary["knn.auroc.all"]
                                                    for m in ("auroc", "fpr95") for g in ("all", "many", "medium",
                                                                                            "few")}}},
                        {"plain": "plain"}, ["knn"], DETECTORS, 2)
    assert "| plain | 60.0 ± 14.1 | 90.0 ± 0.0 |" in text and "n/a" in text


@pytest.mark.parametrize("raw, match", [
    ({"recipes": {"stage1": "digits_lt_stage1"}, "colour": 1}, "unknown compare key"),
    ({"recipes": {}}, "recipes"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["plain", "magic"]}, "'methods' names unknown"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["crt"]}, "lacks 'crt'"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["plain"], "detectors": ["msp", "msp"]}, "twice"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["plain"], "seeds": [0, -1]}, "'seeds'"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["plain"], "knn_k": 0}, "'knn_k'"),
    ({"recipes": {"stage1": "digits_lt_stage1"}, "methods": ["plain"], "device": "tpu"}, "'device'"),
])
def test_compare_spec_errors_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        compare_spec(raw, "my.yaml")


def test_compare_spec_files(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: digits_lt_stage1\n")
    spec_file = tmp_path / "cmp.yaml"
    spec_file.write_text("recipes: {stage1: mine.yaml}\nmethods: [plain, ncm]\nseeds: [3]\n")
    spec = load_compare_spec(spec_file)
    assert spec.recipes["stage1"] == str(recipe.resolve()) and spec.seeds == (3,) and spec.name == "cmp"
    assert spec.detectors == ("msp", "max_logit", "energy", "reachability", "knn", "mahalanobis")
    for name in ("compare_digits_lt", "compare_fashion_lt"):
        shipped = load_compare_spec(name)
        assert shipped.methods == tuple(METHODS) and len(shipped.seeds) == 3
    with pytest.raises(ConfigError, match="compare config not found"):
        load_compare_spec(tmp_path / "missing.yaml")
    assert main(["compare", str(tmp_path / "missing.yaml")]) == 1


def test_a_rerun_into_the_same_folder_starts_afresh(tmp_path):
    spec_file = tmp_path / "cmp.yaml"
    spec_file.write_text("recipes: {stage1: digits_lt_stage1}\nmethods: [plain]\nseeds: [0]\n"
                         "detectors: [msp]\nquick_epochs: 1\n")
    for _ in range(2):
        assert main(["compare", str(spec_file), "--quick", "--no-plots", "--out", str(tmp_path / "out")]) == 0
    log = (tmp_path / "out" / "runs" / "seed0" / "stage1" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"] for line in log].count("epoch") == 1


def test_recipes_must_share_the_data_and_shot_groups(tmp_path):
    from oltr.compare import run_compare

    (tmp_path / "other.yaml").write_text("base: digits_lt_stage2\neval: {few_shot: 5}\n")
    (tmp_path / "cmp.yaml").write_text("recipes: {stage1: digits_lt_stage1, oltr: other.yaml}\n"
                                       "methods: [oltr]\nseeds: [0]\nquick_epochs: 1\n")
    with pytest.raises(ConfigError, match="recipe oltr .*'eval' section differs"):
        run_compare(load_compare_spec(tmp_path / "cmp.yaml"), tmp_path / "out", quick=True, plots=False)


def test_direction_of_every_default_detector_on_model_outputs():
    """The logit and reachability scores the compare uses are outlier scores (larger = more unknown)."""
    from oltr.compare.evaluation import method_scores

    confident = np.array([[10.0, 0.0], [0.0, 10.0]], np.float32)
    unsure = np.array([[0.1, 0.0], [0.0, 0.1]], np.float32)
    outputs = Outputs(np.vstack([confident, unsure]), np.zeros((4, 2), np.float32), np.array([0, 1, -1, -1]),
                      reachability=np.array([5.0, 5.0, 0.1, 0.1], np.float32))
    scores = method_scores(outputs, {})
    for name in ("msp", "max_logit", "energy", "reachability"):
        assert scores[name][2:].min() > scores[name][:2].max(), name

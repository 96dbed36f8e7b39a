"""Enrollment on the embedded Fashion-MNIST-LT: enroll the held-out Coat, Sandal and Bag with n
images each into a trained OLTR model and compare with NCM and a retrained classifier.

    python3 scripts/enroll_eval.py --stage2 S2/best.pt [--seeds 5] [--shots 1,5,10,20] [--epochs 10]

The embedded data holds the held-out classes only in its open set (200 test-file images per
class, ``open_source_labels``): per seed they are split at random into an enrollment pool (100
per class) and evaluation images (the other 100), disjoint; the n enrollment images are drawn
from the pool. Every number is a mean ± std over seeds (the pool split and the draw; one
trained model). Methods, all on the stage-2 model's direct features (the backbone is frozen):

* ``enroll (mean)`` / ``enroll (calibrated)``: :meth:`oltr.OLTRModel.enroll` with each imprint;
* ``NCM``: :class:`oltr.longtail.NCM` over the 7 original classes (all their training images)
  plus the 3 new ones (their n images);
* ``retrain head``: the enrolled model's classifier (memory, hallucinator, selector, cosine
  rows) trained further with cross entropy on the frozen features of the original training
  images plus the n new ones per class (class-balanced batches) — stage 2 retrained on the
  enlarged label set, except that the backbone (with its attention and ``fc_add``, which
  stage 2 fine-tunes) stays frozen.

Unknown detection: one new class at a time is held back (not enrolled) while the other two
are; AUROC (max-softmax and reachability scores) of its evaluation images against the known
test images (original test + the enrolled classes' evaluation images).
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from oltr.datasets import fashion_lt
from oltr.datasets.fashion import FASHION_LT_PATH
from oltr.longtail import NCM
from oltr.metrics import auroc
from oltr.train.restore import load_trained_model

NEW = {"Coat": 4, "Sandal": 5, "Bag": 8}  # Fashion-MNIST source labels of the held-out classes
POOL = 100


@torch.no_grad()
def _features(model, images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div(255.0).unsqueeze(1)
    return torch.cat([model.features(x[i:i + 512]) for i in range(0, x.shape[0], 512)])


@torch.no_grad()
def _outputs(model, features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, K), reachability (N,)) of direct features."""
    model.eval()
    logits, extras = model.classifier(features, model.centroids)
    return logits.numpy(), extras.reachability.numpy()


def _split(rng, open_feats, source, name):
    idx = rng.permutation(np.flatnonzero(source == NEW[name]))
    return open_feats[idx[:POOL]], open_feats[idx[POOL:]]


def _top1(logits, labels):
    return float((logits.argmax(1) == labels).mean())


def _retrain_head(model, feats, labels, epochs, seed):
    torch.manual_seed(seed)
    clf = model.classifier
    clf.train()
    opt = torch.optim.SGD(clf.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    counts = np.bincount(labels)
    weights = torch.from_numpy(1.0 / counts[labels])
    steps = max(1, len(labels) // 64)
    y = torch.from_numpy(labels)
    for _ in range(epochs):
        for _ in range(steps):
            pick = torch.multinomial(weights, 64, replacement=True)
            logits, _ = clf(feats[pick], model.centroids)
            loss = torch.nn.functional.cross_entropy(logits, y[pick])
            opt.zero_grad()
            loss.backward()
            opt.step()
    clf.eval()
    return model


def _write_list(folder, name, images, labels) -> str:
    from PIL import Image

    (folder / name).mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = f"{name}/{i:05d}.png"
        Image.fromarray(image).save(folder / path)
        lines.append(f"{path} {int(label)}\n")
    (folder / f"{name}.txt").write_text("".join(lines))
    return str(folder / f"{name}.txt")


def retrain_both(args, workdir) -> dict:
    """Both stages retrained from scratch with the shipped recipes on the enlarged label set
    (the 7 classes' training images + n per new class; val adds 20 pool images per new class,
    disjoint from the n), for the same seeds of the split and draw as :func:`run`: per n, a
    list of (top-1 on the new classes' evaluation images, on the original test images,
    seconds)."""
    from pathlib import Path

    from oltr.train import load_config, train

    data = fashion_lt()
    source = np.load(FASHION_LT_PATH)["open_source_labels"]
    rows: dict = {}
    for n, seed in ((n, seed) for n in args.shots for seed in range(args.seeds)):
        rng = np.random.default_rng(1000 * seed + n)  # as run(): the same pool split and draw
        picks = {name: rng.permutation(np.flatnonzero(source == NEW[name])) for name in NEW}
        shot_idx = {name: picks[name][:POOL][rng.choice(POOL, n, replace=False)] for name in NEW}
        val_idx = {name: np.setdiff1d(picks[name][:POOL], shot_idx[name])[:20] for name in NEW}
        eval_idx = {name: picks[name][POOL:] for name in NEW}

        def joined(base_images, base_labels, idx):
            images = np.concatenate([base_images, *(data.open_images[idx[m]] for m in NEW)])
            labels = np.concatenate([base_labels, *(np.full(len(idx[m]), 7 + i) for i, m in enumerate(NEW))])
            return images, labels

        folder = Path(workdir) / f"n{n}_seed{seed}"
        lists = {name: _write_list(folder, name, *joined(images, labels, idx)) for name, images, labels, idx in (
            ("train", data.train_images, data.train_labels, shot_idx),
            ("val", data.val_images, data.val_labels, val_idx),
            ("test", data.test_images, data.test_labels, eval_idx))}
        common = ["progress=false", "device=cpu", "data.source=lists", f"data.root={folder}", "model.num_classes=10",
                  *(f"data.{name}_list={path}" for name, path in lists.items())]
        start = time.perf_counter()
        first = train(load_config("fashion_lt_stage1", [*common, f"out_dir={folder / 's1'}"]))
        second = train(load_config("fashion_lt_stage2", [*common, f"out_dir={folder / 's2'}",
                                                         f"model.init={first.best_path}"]))
        model, _ = load_trained_model(second.best_path, "cpu")
        eval_f = _features(model, data.open_images[np.concatenate([eval_idx[m] for m in NEW])])
        eval_y = np.repeat(np.arange(7, 10), [len(eval_idx[m]) for m in NEW])
        rows.setdefault(n, []).append((
            _top1(_outputs(model, eval_f)[0], eval_y),
            _top1(_outputs(model, _features(model, data.test_images))[0], data.test_labels),
            time.perf_counter() - start))
    return rows


def run(args) -> dict:
    data = fashion_lt()
    source = np.load(FASHION_LT_PATH)["open_source_labels"]
    model, _ = load_trained_model(args.stage2, "cpu")
    train_f, test_f = _features(model, data.train_images), _features(model, data.test_images)
    open_f = _features(model, data.open_images)
    test_y = data.test_labels
    base_logits, base_reach = _outputs(model, test_f)
    results: dict = {"before": _top1(base_logits, test_y), "rows": {}, "unknown": {}}
    methods = ["enroll (mean)", "enroll (calibrated)", "NCM", "retrain head"]
    for n in args.shots:
        for method in methods:
            results["rows"][(method, n)] = []
        for seed in range(args.seeds):
            rng = np.random.default_rng(1000 * seed + n)
            parts = {name: _split(rng, open_f, source, name) for name in NEW}
            shots = {name: pool[rng.choice(POOL, n, replace=False)] for name, (pool, _) in parts.items()}
            eval_f = torch.cat([parts[name][1] for name in NEW])
            eval_y = np.repeat(np.arange(7, 10), [len(parts[name][1]) for name in NEW])
            for imprint in ("mean", "calibrated"):
                enrolled = copy.deepcopy(model)
                for name in NEW:
                    enrolled.enroll(shots[name], name, imprint=imprint)
                new_logits, _ = _outputs(enrolled, eval_f)
                old_logits, _ = _outputs(enrolled, test_f)
                results["rows"][(f"enroll ({imprint})", n)].append(
                    (_top1(new_logits, eval_y), _top1(old_logits, test_y)))
                if imprint == "mean":
                    start = time.perf_counter()
                    all_f = torch.cat([train_f, *shots.values()])
                    all_y = np.concatenate([data.train_labels, np.repeat(np.arange(7, 10), n)])
                    retrained = _retrain_head(copy.deepcopy(enrolled), all_f, all_y, args.epochs, seed)
                    results.setdefault("retrain_seconds", []).append(time.perf_counter() - start)
                    results["rows"][("retrain head", n)].append(
                        (_top1(_outputs(retrained, eval_f)[0], eval_y), _top1(_outputs(retrained, test_f)[0], test_y)))
            ncm = NCM().fit(torch.cat([train_f, *shots.values()]).numpy(),
                            np.concatenate([data.train_labels, np.repeat(np.arange(7, 10), n)]))
            results["rows"][("NCM", n)].append((float((ncm.predict(eval_f.numpy()) == eval_y).mean()),
                                               float((ncm.predict(test_f.numpy()) == test_y).mean())))
            # unknown detection: hold one new class back, enroll the other two
            for held in NEW:
                known_f = torch.cat([test_f, *(parts[name][1] for name in NEW if name != held)])
                b_logits, b_reach = _outputs(model, parts[held][1])
                row = [_auroc_msp(base_logits, b_logits), _auroc_reach(base_reach, b_reach)]
                for imprint in ("mean", "calibrated"):
                    enrolled = copy.deepcopy(model)
                    for name in NEW:
                        if name != held:
                            enrolled.enroll(shots[name], name, imprint=imprint)
                    k_logits, k_reach = _outputs(enrolled, known_f)
                    u_logits, u_reach = _outputs(enrolled, parts[held][1])
                    row.append(_auroc_msp(k_logits, u_logits))
                row.append(_auroc_reach(k_reach, u_reach))  # the same memory with either imprint
                results["unknown"].setdefault((held, n), []).append(tuple(row))
    return results


def _msp(logits):
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return p.max(1)


def _auroc_msp(known_logits, unknown_logits):
    """AUROC of the unknown images against the known ones, score = -max softmax."""
    return auroc(-_msp(known_logits), -_msp(unknown_logits))


def _auroc_reach(known_reach, unknown_reach):
    """AUROC with score = -reachability (far from every centroid = unknown)."""
    return auroc(-known_reach, -unknown_reach)


def _ms(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std():.3f}"


def table(results, args) -> str:
    lines = [f"original classes, before enrollment: top-1 {results['before']:.3f} (7 classes, 1400 test images)", "",
             "| method | n | top-1 enrolled (Coat, Sandal, Bag) | top-1 original after |",
             "|---|---|---|---|"]
    for (method, n), rows in results["rows"].items():
        rows = np.array(rows)
        lines.append(f"| {method} | {n} | {_ms(rows[:, 0])} | {_ms(rows[:, 1])} |")
    lines += ["", "unknown detection of the held-back class (AUROC; the other two enrolled with n images):", "",
              "| held back | n | MSP before | reach. before | MSP after (mean) | MSP after (calibrated) "
              "| reach. after |",
              "|---|---|---|---|---|---|---|"]
    for (held, n), rows in results["unknown"].items():
        rows = np.array(rows)
        lines.append(f"| {held} | {n} | " + " | ".join(_ms(rows[:, i]) for i in range(5)) + " |")
    secs = results.get("retrain_seconds")
    if secs:
        lines += ["", f"retrain head: {np.mean(secs):.1f} s per run ({args.epochs} epochs)"]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage2", required=True, help="a stage-2 (oltr) best.pt trained on fashion_lt")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--shots", default="1,5,10,20")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the retrained head")
    parser.add_argument("--retrain-both", default=None, metavar="DIR",
                        help="instead: retrain both stages on the enlarged label set (each seed and n), "
                             "writing the images, lists and runs under DIR")
    args = parser.parse_args(argv)
    args.shots = [int(s) for s in args.shots.split(",")]
    torch.set_num_threads(1)
    if args.retrain_both:
        print("| method | n | top-1 enrolled (Coat, Sandal, Bag) | top-1 original after | time |")
        print("|---|---|---|---|---|")
        for n, runs in retrain_both(args, args.retrain_both).items():
            runs = np.array(runs)
            print(f"| retrain both stages ({len(runs)} seeds) | {n} | {_ms(runs[:, 0])} | {_ms(runs[:, 1])} | "
                  f"{runs[:, 2].mean():.0f} s per run |")
        return
    print(table(run(args), args))


if __name__ == "__main__":
    main()

"""Training from official list files (data.source: lists) on PNGs written from digits."""
from __future__ import annotations

import numpy as np
import pytest

from oltr.datasets import digits_lt
from oltr.train import ConfigError, load_config, train
from oltr.train.data import build_data
from oltr.train.eval_run import evaluate_checkpoint


def _write_split(root, name, images, labels, folder):
    from PIL import Image

    (root / folder).mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / folder / f"{name}_{i}.png")
        lines.append(f"{name}_{i}.png {int(label)}")
    path = root / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("lists")
    data = digits_lt()
    def pick(labels, n):
        return np.concatenate([np.flatnonzero(labels == k)[:n] for k in range(6)])

    train_idx, val_idx, test_idx = pick(data.train_labels, 4), pick(data.val_labels, 2), pick(data.test_labels, 3)
    files = {
        "train_list": _write_split(root, "train", data.train_images[train_idx], data.train_labels[train_idx], "img"),
        "val_list": _write_split(root, "val", data.val_images[val_idx], data.val_labels[val_idx], "img"),
        "test_list": _write_split(root, "test", data.test_images[test_idx], data.test_labels[test_idx], "img"),
        "open_list": _write_split(root, "open", data.open_images[:8], data.open_labels[:8], "open_img"),
    }
    return root, files


def _config(root, files, *extra):
    sets = [f"data.{k}={v}" for k, v in files.items()]
    return load_config("digits_lt_stage1", ["progress=false", "device=cpu", "data.source=lists",
                                            f"data.root={root / 'img'}", f"data.open_root={root / 'open_img'}",
                                            f"out_dir={root / 'run'}", *sets, *extra])


def test_train_and_eval_from_list_files(lists):
    root, files = lists
    data = build_data(_config(root, files))
    assert len(data.train) == 24 and data.train_counts == (4,) * 6 and len(data.open) == 8
    image, label, path = data.train[0]
    assert tuple(image.shape) == (1, 8, 8) and float(image.max()) <= 1.0 and path.endswith("train_0.png")
    result = train(_config(root, files, "epochs=1", "batch_size=8"))
    metrics = evaluate_checkpoint(result.best_path, open_set=True, device="cpu")
    assert (metrics["num_known"], metrics["num_unknown"]) == (18, 8)


def test_list_config_errors(lists):
    root, files = lists
    with pytest.raises(ConfigError, match="needs data.val_list"):
        build_data(_config(root, files, "data.val_list="))
    with pytest.raises(ConfigError, match=r"data.train_list: .*train.txt:21: label 5 is outside \[0, 5\).*"
                                          r"\(model.num_classes is 5\)"):
        build_data(_config(root, files, "model.num_classes=5"))
    with pytest.raises(FileNotFoundError, match="listed images not found"):
        build_data(_config(root, files, f"data.root={root}"))

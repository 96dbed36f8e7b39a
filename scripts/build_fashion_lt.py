#!/usr/bin/env python3
"""Build the embedded Fashion-MNIST-LT file, ``python/oltr/datasets/_data/fashion_lt.npz``.

Source: Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``;
the IDX files in /usr/share/datasets/fashion-mnist/), Zalando SE 2017, MIT licence (see
``python/oltr/datasets/_data/FASHION_MNIST_LICENSE``). Deterministic: the same source
files give a byte-identical array content (seeded with ``--seed``).

Design (documented in ``oltr.datasets.fashion_lt``):

* known, labels 0..6: T-shirt/top, Trouser, Sneaker, Pullover, Ankle boot, Dress, Shirt —
  in this order the long tail 640/320/160/80/40/20/10 (``longtail_counts(7, 640, "exp",
  imbalance=64)``); official groups: many 640/320/160, medium 80/40, few 20/10 (paper
  rule: few = 10 only). The tail holds the classes that are easy to confuse with a head
  class (Dress and Shirt vs T-shirt/Pullover), so a plain model shows the usual
  many > medium > few pattern; in Fashion-MNIST's own order the tail would be footwear,
  which is easy, and few-shot accuracy came out above medium;
* open set: Coat (near: looks like Pullover/Shirt), Sandal (middle: footwear like
  Sneaker/Ankle boot), Bag (far);
* train and val from the 60k training file (disjoint), val 20 per known class;
  test (200 per known class) and open (200 per unknown class) from the 10k test file.

Usage: ``python scripts/build_fashion_lt.py [--src DIR] [--out FILE] [--seed N]``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python"))

from oltr.data.splits import (  # noqa: E402
    longtail_counts,
    make_balanced_split,
    make_longtail_split,
    remap_labels,
)
from oltr.datasets._idx import read_idx  # noqa: E402

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
KNOWN = (0, 1, 7, 2, 9, 3, 6)  # head -> tail
UNKNOWN = (4, 5, 8)
MAX_COUNT, IMBALANCE = 640, 64.0
VAL_PER_CLASS, TEST_PER_CLASS, OPEN_PER_CLASS = 20, 200, 200


def build(src: Path, seed: int) -> dict[str, np.ndarray]:
    """Return the arrays stored in the .npz file."""
    tr_x = read_idx(src / "train-images-idx3-ubyte.gz")
    tr_y = read_idx(src / "train-labels-idx1-ubyte.gz").astype(np.int64)
    te_x = read_idx(src / "t10k-images-idx3-ubyte.gz")
    te_y = read_idx(src / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    counts = longtail_counts(len(KNOWN), MAX_COUNT, kind="exp", imbalance=IMBALANCE)
    val = make_balanced_split(tr_y, VAL_PER_CLASS, seed=seed, classes=KNOWN)
    train = make_longtail_split(tr_y, counts, seed=seed + 1, classes=KNOWN, exclude=val)
    test = make_balanced_split(te_y, TEST_PER_CLASS, seed=seed + 2, classes=KNOWN)
    open_ = make_balanced_split(te_y, OPEN_PER_CLASS, seed=seed + 3, classes=UNKNOWN)
    return {
        "train_images": tr_x[train],
        "train_labels": remap_labels(tr_y[train], KNOWN),
        "val_images": tr_x[val],
        "val_labels": remap_labels(tr_y[val], KNOWN),
        "test_images": te_x[test],
        "test_labels": remap_labels(te_y[test], KNOWN),
        "open_images": te_x[open_],
        "open_labels": np.full(open_.size, -1, dtype=np.int64),
        "open_source_labels": te_y[open_],
        "known_classes": np.asarray(KNOWN, dtype=np.int64),
        "unknown_classes": np.asarray(UNKNOWN, dtype=np.int64),
        "source_class_names": np.asarray(CLASS_NAMES),
        "train_counts": counts,
        "seed": np.asarray(seed, dtype=np.int64),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument(
        "--out", type=Path, default=REPO / "python/oltr/datasets/_data/fashion_lt.npz"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.src / "train-images-idx3-ubyte.gz").is_file():
        print(f"error: Fashion-MNIST IDX files not found in {args.src} "
              "(apt-get install dataset-fashion-mnist)", file=sys.stderr)
        return 1
    arrays = build(args.src, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    sizes = {k: v.shape for k, v in arrays.items() if k.endswith("_images")}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {sizes}, "
          f"train counts {arrays['train_counts'].tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

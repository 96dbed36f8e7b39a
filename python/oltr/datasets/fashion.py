"""Fashion-MNIST-LT: the embedded long-tailed, open-set Fashion-MNIST."""
from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from oltr.datasets.bundle import OpenLTData

__all__ = ["FASHION_LT_PATH", "fashion_lt"]

FASHION_LT_PATH = Path(__file__).resolve().parent / "_data" / "fashion_lt.npz"


@lru_cache(maxsize=1)
def _load() -> OpenLTData:
    if not FASHION_LT_PATH.is_file():
        raise FileNotFoundError(
            f"{FASHION_LT_PATH} is missing; rebuild it with scripts/build_fashion_lt.py"
        )
    with np.load(FASHION_LT_PATH, allow_pickle=False) as f:
        a = {k: f[k] for k in f.files}
    names = [str(n) for n in a["source_class_names"]]
    known = tuple(int(c) for c in a["known_classes"])
    unknown = tuple(int(c) for c in a["unknown_classes"])
    return OpenLTData(
        name="fashion_lt",
        train_images=a["train_images"],
        train_labels=a["train_labels"],
        val_images=a["val_images"],
        val_labels=a["val_labels"],
        test_images=a["test_images"],
        test_labels=a["test_labels"],
        open_images=a["open_images"],
        open_labels=a["open_labels"],
        class_names=tuple(names[c] for c in known),
        unknown_class_names=tuple(names[c] for c in unknown),
        known_classes=known,
        unknown_classes=unknown,
        train_counts=a["train_counts"],
    )


def fashion_lt() -> OpenLTData:
    """Long-tailed Fashion-MNIST with a held-out open set (embedded, no network).

    28×28 uint8 grayscale images from Fashion-MNIST (Zalando SE, MIT licence; the notice
    ships beside the data as ``_data/FASHION_MNIST_LICENSE``), built by
    ``scripts/build_fashion_lt.py`` from Debian's ``dataset-fashion-mnist``.

    * Known classes, labels 0–6, with 640/320/160/80/40/20/10 training images (an
      exponential profile, imbalance 64): T-shirt/top, Trouser, Sneaker, Pullover,
      Ankle boot, Dress, Shirt. Official shot groups (≥100 / ≤20): many = T-shirt,
      Trouser, Sneaker; medium = Pullover, Ankle boot; few = Dress, Shirt. With the
      paper's rule (>100 / <20) Dress (20) is medium. The few-shot classes are the ones
      easily confused with a head class (Dress, Shirt vs T-shirt, Pullover), so a plain
      model shows the usual many > medium > few drop; in Fashion-MNIST's own class order the
      tail would be the easy footwear.
    * Open set (label −1): Coat, Sandal, Bag — one near unknown (Coat resembles Pullover
      and Shirt), one in between (Sandal is footwear like Sneaker and Ankle boot) and
      one far (Bag). Holding out Coat *and* Shirt makes max-softmax AUROC ≈ 0.5
      (they look like the known Pullover and T-shirt); this split gave MSP AUROC ≈ 0.68
      both with a small MLP and with a small CNN (10 epochs of plain cross-entropy:
      top-1 many/medium/few 0.99 / 0.83 / 0.17), so detection is meaningful but not
      trivial.
    * val: 20 per known class (from the training file, disjoint from train); test: 200
      per known class; open: 200 per unknown class (both from the test file).

    The file is read once; every call returns its own read-only copy (see
    :class:`OpenLTData`), so nothing done to one result reaches another.
    """
    return replace(_load())  # replace() copies every array (OpenLTData.__post_init__)

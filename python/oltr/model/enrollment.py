"""Enroll a new class into a trained model from a few examples, or forget one, without training.

An OLTR class is a centroid in the memory, a row of the cosine classifier and a row of the
hallucinator; a plain (stage-1) class is a row of ``fc`` (and, for its reachability score, a
class mean in the memory buffer). :func:`enroll_class` appends each of them from the class's
examples:

* **memory**: the mean of the examples' direct features (the one class-mean helper,
  :class:`oltr.inference.ClassMeanAccumulator`, as :func:`oltr.compute_centroids` uses);
* **hallucinator** (``fc_hallucinator``; ``fc`` of a plain model): a row imprinted from the
  class mean c, ``w = mean row norm · ĉ`` (ĉ = c / ‖c‖), with the bias that gives the new class
  at its own mean the average of what the existing rows give their own classes at their
  means (the memory): ``w·c + b = mean_k (w_k·c_k + b_k)``. Why: stage 2 starts its
  hallucinator from the stage-1 ``fc`` (a linear classifier of the direct features), so an
  imprinted linear-classifier row is what the layer expects, and calibrating it against the
  trained rows at their own class means makes the new class behave like a typical existing
  one: the memory read-out of its images gives the new centroid a share like the one a
  trained row gives its own class, instead of 0 (a zero row) or an arbitrary share (the mean
  of the rows attends to every class alike). A plain model's ``fc`` row is imprinted the
  same way (its memory holds the class means of its training features when loaded from a
  checkpoint). Without class means (an all-zero memory) the bias makes the new coefficient
  equal, on average over its examples, the largest existing one;
* **cosine classifier** (weight imprinting, Qi, Brown & Lowe, CVPR 2018): the normalised mean
  of the normalised *meta-embeddings* of the examples, computed after the memory and the
  hallucinator got their new rows. The meta-embedding is what the cosine classifier sees
  (``reach · (x + selector ⊙ memory)``); imprinting the direct features instead would point
  the row away from where the classifier's inputs lie for this class by the memory term. The
  row is scaled to the mean norm of the existing rows (the cosine classifier ignores the
  norm; this keeps the weight statistics of the layer for later fine-tuning).
  ``imprint="calibrated"`` is the alternative measured in docs/enrollment.md: the trained
  rows are far less aligned with their classes' meta-embeddings (cosine ~0.4-0.75 on
  Fashion-MNIST-LT) than an imprinted mean is with its class (~0.95), and meta-embeddings of
  ReLU features share a large common component, so the plain imprinted row out-scores the
  trained ones on many old-class images (forgetting). The calibrated row keeps the cosine
  with its class at the trained rows' average (measured at the memory centroids) and points
  the rest of its length away from the mean direction of the old classes.

Labels stay dense: the new class gets label K; :func:`forget_class` removes a label and every
later label moves down by one (class names and counts are lists indexed by label in every
consumer, so a hole would break them). Parameters keep their names and change their first
dimension, so ``state_dict`` round-trips into a model built for the new K.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from oltr.inference.class_means import ClassMeanAccumulator
from oltr.model._class_rows import add_class_to_stats, append_class_rows, drop_class_rows, imprint_stats

__all__ = ["IMPRINTS", "enroll_class", "example_features", "forget_class"]

#: ``imprint`` values of :func:`enroll_class` (the cosine classifier's row): ``"mean"`` (Qi et
#: al.: the normalised mean of the unit meta-embeddings) or ``"calibrated"`` (that direction
#: tilted away from the old classes until its cosine with it equals the average cosine of a
#: trained row with its own class's meta-embedding at its centroid; see the module docstring).
IMPRINTS = ("mean", "calibrated")

# classes whose trained rows the "calibrated" imprint measures (all of them up to this many)
_CALIBRATION_CLASSES = 1024


def _eval_modes(model: Any):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    return modes


def _restore(modes) -> None:
    for module, training in modes:
        module.training = training


def example_features(model: Any, x: Any) -> Tensor:
    """The direct features float32 ``(B, D)`` of a class's examples ``x``: images float
    ``(B, C, H, W)`` (model inputs, through the backbone in eval mode) or direct features
    ``(B, D)``, numpy or torch.

    Raises:
        ValueError: no example, NaN / Inf, a wrong feature dimension, images the backbone
            cannot take (their size or channels), or another shape; the message names ``x``.
        TypeError: not a float array or tensor.
    """
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(f"x must be float images (B, C, H, W) or features (B, D), got dtype {x.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a tensor or numpy array of images or features, got {type(x).__name__}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"x must be float images (B, C, H, W) or features (B, D), got dtype {x.dtype}")
    if x.dim() not in (2, 4):
        raise ValueError(f"x must be images (B, C, H, W) or features (B, {model.feat_dim}), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("x is empty: enrolling a class needs at least one example")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or Inf")
    device = model.centroids.device
    if x.dim() == 2:
        if x.shape[1] != model.feat_dim:
            raise ValueError(f"x has feature dimension D={x.shape[1]}, but the model's direct features have "
                             f"D={model.feat_dim}")
        return x.detach().to(device, torch.float32)
    modes = _eval_modes(model)
    try:
        with torch.no_grad():
            features = model.features(x.detach().to(device, model.centroids.dtype))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"x: images of shape {tuple(x.shape)[1:]} (C, H, W) do not fit the model's backbone "
                         f"({first})") from None
    finally:
        _restore(modes)
    if not bool(torch.isfinite(features).all()):
        raise ValueError("x gives NaN or Inf features")
    return features.to(torch.float32)


def _class_mean(features: Tensor) -> Tensor:
    labels = torch.zeros(features.shape[0], dtype=torch.int64, device=features.device)
    return ClassMeanAccumulator.of(features, labels, 1).means(dtype=torch.float32)[0]


def _unit(v: Tensor) -> Tensor:
    norm = v.norm()
    return v / norm if float(norm) > 0 else torch.zeros_like(v)


def _imprinted_linear_row(layer: nn.Linear, features: Tensor, mean: Tensor,
                          sums: dict[str, Any]) -> tuple[Tensor, Tensor]:
    """(weight row (D,), bias ()) of a linear classifier of direct features for a new class
    with class mean ``mean`` (D,), from the existing classes' sums ``sums``
    (:func:`oltr.model._class_rows.imprint_stats`; see the module docstring)."""
    row = (sums["hallucinator"] / sums["count"]) * _unit(mean)
    if layer.bias is None:
        return row, torch.zeros(())
    if sums["memory"]:
        return row, sums["own"] / sums["count"] - row @ mean
    # no class means: its examples instead
    logits = torch.addmm(layer.bias.detach().float(), features, layer.weight.detach().float().t())
    return row, logits.max(dim=1).values.mean() - (features @ row).mean()


def _check_classifier(model: Any) -> None:
    from oltr.nn.dot_product import DotProductClassifier
    from oltr.nn.meta_embedding import MetaEmbeddingClassifier

    if not isinstance(model.classifier, (MetaEmbeddingClassifier, DotProductClassifier)):
        raise TypeError(f"enroll / forget support the 'oltr' (MetaEmbeddingClassifier) and 'plain' "
                        f"(DotProductClassifier) classifiers, not {type(model.classifier).__name__}")


def _check_name(class_name: Optional[str]) -> None:
    if class_name is not None and (not isinstance(class_name, str) or not class_name.strip()):
        raise ValueError(f"class_name must be a non-empty string or None, got {class_name!r}")


@torch.no_grad()
def enroll_class(model: Any, x: Any, class_name: Optional[str] = None, *, imprint: str = "mean") -> int:
    """Append a class to ``model`` (an :class:`~oltr.OLTRModel`) from its examples ``x``
    (see :func:`example_features`); returns its label (the old K). See the module docstring
    for what is appended. ``class_name`` is appended to ``model.class_names`` when the model
    carries names (``model.class_names`` is a list), else names ``"class_<i>"`` are made up
    for the existing classes first. ``imprint`` (see :data:`IMPRINTS`) picks the cosine row."""
    if imprint not in IMPRINTS:
        raise ValueError(f"imprint must be one of {IMPRINTS}, got {imprint!r}")
    _check_classifier(model)
    _check_name(class_name)
    features = example_features(model, x)
    mean = _class_mean(features)
    label = int(model.num_classes)
    classifier = model.classifier
    hallucinator = classifier.fc_hallucinator if model.stage == "oltr" else classifier.fc
    sums = imprint_stats(model)
    row, bias = _imprinted_linear_row(hallucinator, features, mean, sums)
    # the memory and hallucinator rows first, with the index and caches that depend on them:
    # the meta-embeddings the cosine row is imprinted from do not depend on the cosine rows
    append_class_rows(model, {"centroids": mean, "weight": row, "bias": bias})
    if model.stage == "oltr":
        direction = _cosine_direction(model, features, label, imprint)
        append_class_rows(model, {"cosine": (sums["cosine"] / sums["count"]) * direction})
    add_class_to_stats(model, sums)
    names = getattr(model, "class_names", None)
    if not isinstance(names, list):
        names = [f"class_{i}" for i in range(label)]
    model.class_names = [*names, class_name if class_name is not None else f"class_{label}"]
    return label


def _meta_directions(model: Any, features: Tensor) -> Tensor:
    """Unit meta-embeddings (B, D) of direct features, through the classifier's inference
    path (eval mode, no autograd), whose caches enrollment keeps current: their directions do
    not depend on the reachability, so no nearest-centroid search is made
    (:meth:`~oltr.nn.MetaEmbeddingClassifier.meta_directions`)."""
    modes = [(m, m.training) for m in model.classifier.modules()]
    model.classifier.eval()
    try:
        return model.classifier.meta_directions(features.to(model.centroids.dtype), model.centroids)
    finally:
        _restore(modes)


def _cosine_direction(model: Any, features: Tensor, label: int, imprint: str) -> Tensor:
    """The unit cosine-classifier row of the new class ``label`` (see the module docstring)."""
    mean = _unit(_meta_directions(model, features).mean(dim=0))
    if imprint == "mean":
        return mean
    # "calibrated": as aligned with the class as the trained rows are with theirs (measured at
    # the classes' memory centroids; at most _CALIBRATION_CLASSES of them, evenly spaced, as
    # each costs a pass over the K hallucinator rows), the rest turned away from the old classes
    pick = torch.arange(0, label, max(1, label // _CALIBRATION_CLASSES), device=model.centroids.device)
    old = _meta_directions(model, model.centroids.index_select(0, pick))
    weight = model.classifier.cosnorm_classifier.weight.detach()
    rows = torch.nn.functional.normalize(weight.index_select(0, pick).float(), dim=1)
    target = float((rows * old).sum(dim=1).mean().clamp(-1.0, 1.0))
    away = old.mean(dim=0)
    away = _unit(-(away - (away @ mean) * mean))
    return target * mean + (1.0 - target * target) ** 0.5 * away


@torch.no_grad()
def forget_class(model: Any, label: int) -> None:
    """Remove class ``label`` from ``model``: its centroid and its classifier rows; every later
    label moves down by one (and its name in ``model.class_names``). The last class cannot be
    removed.

    Raises:
        ValueError: ``label`` is not in ``[0, K)``, or it is the only class.
        TypeError: ``label`` is not an integer.
    """
    _check_classifier(model)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"label must be an integer, got {label!r}")
    label = int(label)
    count = int(model.num_classes)
    if not 0 <= label < count:
        raise ValueError(f"label {label} is unknown: the model has labels 0..{count - 1}")
    if count == 1:
        raise ValueError("cannot forget the only class of the model (K would be 0)")
    drop_class_rows(model, label)
    if model.stage == "oltr":
        model.classifier.clear_caches()  # labels shift: the cached index is rebuilt on next use
    names = getattr(model, "class_names", None)
    if isinstance(names, list) and len(names) == count:
        model.class_names = names[:label] + names[label + 1:]

"""Each compared method's outputs on one seed: trained checkpoints run through the one
inference path (:func:`oltr.inference.loading.load_for_inference`, its
:class:`~oltr.inference.ModelRunner`), and the post-hoc methods that only change the classifier
of a shared model (logit adjustment, τ-norm, NCM), with their τ chosen on validation data."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from oltr.inference.outputs import ModelRunner, Outputs

__all__ = ["MethodOutputs", "checkpoint_outputs", "logit_adjusted", "ncm_outputs", "tau_normalised"]


@dataclass
class MethodOutputs:
    """A method's outputs on one seed.

    Attributes:
        val: known validation samples; test: test ∪ open set (labels ``-1`` = unknown);
            train: the training samples (evaluation transform), whose ``features`` / ``labels``
            the feature detectors are fitted on. Each an :class:`oltr.inference.Outputs`.
        head: the method's linear head ``(weight float64 (K, D), bias float64 (K,))`` when its
            logits are ``features @ weight.T + bias`` (ViM, ReAct), else None.
        loaded: the :class:`oltr.inference.loading.LoadedModel` it came from.
        detail: what was chosen on validation (``{"tau": ...}``).
    """

    val: Outputs
    test: Outputs
    train: Outputs
    head: Optional[tuple[np.ndarray, np.ndarray]]
    loaded: Any
    detail: dict[str, Any] = field(default_factory=dict)


def _linear_head(model: torch.nn.Module) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The model's linear head (LWS scales folded in) or None (cosine / meta-embedding head)."""
    from oltr.nn.dot_product import DotProductClassifier
    from oltr.scores._linear_head import linear_head

    return linear_head(model) if isinstance(model.classifier, DotProductClassifier) else None


def checkpoint_outputs(path: str | Path, device: str = "cpu", data: Any = None) -> tuple[MethodOutputs, Any]:
    """``(MethodOutputs, DataBundle)`` of a ``best.pt``: its model run on the val, test ∪ open
    and training splits of its config (``data``: a :class:`oltr.train.data.DataBundle` to reuse)."""
    from oltr.inference.loading import load_for_inference
    from oltr.train.data import build_data, eval_loader

    loaded = load_for_inference(path, device)
    config = loaded.config
    data = data if data is not None else build_data(config)

    def run(dataset):
        return loaded.runner.run(eval_loader(config, dataset))

    outputs = MethodOutputs(val=run(data.val), test=run(data.split("test_open")), train=run(data.train_plain),
                            head=_linear_head(loaded.model), loaded=loaded)
    return outputs, data


def logit_adjusted(base: MethodOutputs, train_counts) -> MethodOutputs:
    """Post-hoc logit adjustment (:func:`oltr.longtail.logit_adjust`) of ``base`` with τ tuned
    on its validation outputs (:func:`oltr.longtail.tune_tau`)."""
    from oltr.longtail import log_prior, logit_adjust, tune_tau

    tau, _ = tune_tau(base.val.logits, base.val.labels, train_counts)

    def adjust(outputs: Outputs) -> Outputs:
        return replace(outputs, logits=logit_adjust(outputs.logits, train_counts, tau).astype(np.float32))

    head = None
    if base.head is not None:
        head = (base.head[0], base.head[1] - tau * log_prior(train_counts))
    return MethodOutputs(adjust(base.val), adjust(base.test), base.train, head, base.loaded, {"tau": tau})


def _reclassified(runner: ModelRunner, outputs: Outputs, batch_size: int = 1024) -> Outputs:
    """``outputs`` with logits (and reachability) recomputed from its features by ``runner``."""
    features, labels = torch.from_numpy(outputs.features), torch.from_numpy(outputs.labels)
    batches = [(features[i:i + batch_size], labels[i:i + batch_size]) for i in range(0, len(outputs), batch_size)]
    return runner.run(batches, features=True)


def tau_normalised(base: MethodOutputs) -> MethodOutputs:
    """τ-normalisation (:func:`oltr.longtail.tau_normalize`) of the plain model of ``base``, τ
    tuned on its validation features (:func:`oltr.longtail.tune_tau_normalization`); the new
    head is run through the inference path (:class:`oltr.inference.ModelRunner`)."""
    from oltr.longtail import tau_normalize, tune_tau_normalization

    if base.head is None:
        raise ValueError("τ-norm needs a dot-product (linear) classifier")
    model = copy.deepcopy(base.loaded.model)
    fc = model.classifier.fc
    tau, _ = tune_tau_normalization(base.val.features, base.val.labels, fc.weight.detach(), fc.bias.detach())
    with torch.no_grad():
        fc.weight.copy_(tau_normalize(fc.weight.detach(), tau))
    runner = ModelRunner(model, base.loaded.runner.memory)
    weight = fc.weight.detach().double().cpu().numpy()
    return MethodOutputs(_reclassified(runner, base.val), _reclassified(runner, base.test), base.train,
                         (weight, base.head[1]), base.loaded, {"tau": tau})


def ncm_outputs(base: MethodOutputs) -> MethodOutputs:
    """Nearest class mean (:class:`oltr.longtail.NCM`) on the features of ``base``: logits are
    minus the squared distances to the centred, L2-normalised class means of the training
    features; features and reachability are those of ``base``."""
    from oltr.longtail import NCM

    ncm = NCM().fit(base.train.features, base.train.labels)

    def classify(outputs: Outputs) -> Outputs:
        return replace(outputs, logits=ncm.logits(outputs.features).astype(np.float32))

    return MethodOutputs(classify(base.val), classify(base.test), base.train, None, base.loaded)

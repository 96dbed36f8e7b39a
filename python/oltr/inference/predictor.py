"""``Predictor``: label new images or features with a trained model, flagging unknowns.

::

    predictor = oltr.Predictor.from_checkpoint("runs/stage2/best.pt")
    result = predictor.predict(["cat.png", "dog.jpg"])       # or uint8 arrays, tensors, features
    result.labels          # int64 (N,), -1 = unknown
    result.class_names     # the model's K class names (from the training data)

The model is built once; its nearest-centroid index and normalised classifier weights are
cached by the model and reused by every batch. Decisions follow the rejection stored in the
checkpoint at training time (:class:`~oltr.inference.Rejection`: the ``msp`` threshold chosen
on validation), or ``rule="official"`` (max softmax < 0.1).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from oltr.inference.decisions import Rejection
from oltr.inference.inputs import (
    ImageSources,
    InputError,
    InputMismatchWarning,
    check_paths,
    expected_input,
    source_name,
    split_uint8,
)
from oltr.inference.loading import LoadedModel, load_for_inference
from oltr.inference.outputs import Outputs
from oltr.inference.scores import outlier_scores

__all__ = ["Prediction", "Predictor"]

UNKNOWN_NAME = "unknown"


@dataclass
class Prediction:
    """Predictions for N inputs.

    Attributes:
        labels: int64 ``(N,)`` the decision: the closed-set label, or ``-1`` = unknown.
        closed_labels: int64 ``(N,)`` argmax of the logits (no rejection).
        unknown: bool ``(N,)`` rejected as unknown by ``rejection``.
        probabilities: float32 ``(N, K)`` softmax of the logits.
        scores: ``{name: float64 (N,)}`` every outlier score (larger = more unknown):
            ``msp``, ``max_logit``, ``energy`` and, with a memory, ``reachability``.
        class_names: the model's K class names (index = label).
        rejection: the rule that decided ``unknown``.
        inputs: N names of the inputs (paths, or ``"<kind>[i]"``).
        logits: float32 ``(N, K)``; features: float32 ``(N, D)`` direct features.
    """

    labels: np.ndarray
    closed_labels: np.ndarray
    unknown: np.ndarray
    probabilities: np.ndarray
    scores: dict[str, np.ndarray]
    class_names: list[str]
    rejection: Rejection
    inputs: list[str] = field(default_factory=list)
    logits: Optional[np.ndarray] = None
    features: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def label_names(self) -> list[str]:
        """Per input, its class name or ``"unknown"``."""
        return [UNKNOWN_NAME if y == -1 else self.class_names[y] for y in self.labels.tolist()]

    def records(self) -> Iterator[dict[str, Any]]:
        """One JSON-ready dict per input (the lines ``oltr predict`` writes)::

            {"input", "label" (-1 = unknown), "class_name" ("unknown" if -1), "closed_label",
             "unknown", "max_softmax", "scores": {name: float}}
        """
        names = self.label_names
        top = self.probabilities.max(axis=1) if len(self) else np.zeros(0)
        for i in range(len(self)):
            yield {
                "input": self.inputs[i] if i < len(self.inputs) else str(i),
                "label": int(self.labels[i]), "class_name": names[i],
                "closed_label": int(self.closed_labels[i]), "unknown": bool(self.unknown[i]),
                "max_softmax": float(top[i]),
                "scores": {k: float(v[i]) for k, v in self.scores.items()},
            }


class Predictor:
    """A trained model ready to label images or direct features (see the module docstring).

    Build it with :meth:`from_checkpoint`. ``rule`` / ``score`` override the stored
    rejection (:meth:`oltr.inference.Rejection.from_checkpoint`); ``batch_size`` bounds the
    images or features run at once.
    """

    def __init__(self, loaded: LoadedModel, rule: Optional[str] = None, score: Optional[str] = None,
                 batch_size: int = 256) -> None:
        if int(batch_size) < 1:
            raise InputError(f"batch_size must be >= 1; got {batch_size}")
        self.loaded = loaded
        self.rejection = Rejection.from_checkpoint(loaded.checkpoint, rule=rule, score=score)
        if self.rejection.score == "reachability" and not loaded.runner.has_reachability:
            raise InputError("the rejection uses the reachability, but this model has no memory or class means")
        self.batch_size = int(batch_size)
        self.expected = expected_input(loaded.config)
        self._warned = False
        self._mismatch: Optional[str] = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "auto", *,
                        rule: Optional[str] = None, score: Optional[str] = None, batch_size: int = 256,
                        overrides: Sequence[str] = ()) -> Predictor:
        """Load ``path`` (a ``best.pt``) on ``device`` (``auto``, ``cpu``, ``cuda``).

        Raises:
            oltr.checkpoint.CheckpointError: missing, corrupt or mismatching checkpoint.
            ValueError: an unknown ``rule`` or a ``score`` without a stored threshold.
        """
        return cls(load_for_inference(path, device, overrides), rule=rule, score=score, batch_size=batch_size)

    # -- properties ------------------------------------------------------------------------
    @property
    def model(self):
        return self.loaded.model

    @property
    def runner(self):
        return self.loaded.runner

    @property
    def config(self):
        return self.loaded.config

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def device(self) -> torch.device:
        return self.runner.device

    # -- decisions -------------------------------------------------------------------------
    def decide(self, outputs: Outputs, names: Sequence[str]) -> Prediction:
        """The :class:`Prediction` of model outputs (scores once, then the rejection)."""
        scores = outlier_scores(outputs.logits, outputs.reachability)
        closed = outputs.logits.argmax(axis=1).astype(np.int64) if len(outputs) else np.zeros(0, np.int64)
        unknown = self.rejection.unknown(scores)
        logits = torch.from_numpy(np.ascontiguousarray(outputs.logits, dtype=np.float32))
        return Prediction(
            labels=np.where(unknown, -1, closed).astype(np.int64), closed_labels=closed, unknown=unknown,
            probabilities=torch.softmax(logits, dim=1).numpy(), scores=scores, class_names=self.class_names,
            rejection=self.rejection, inputs=list(names), logits=outputs.logits, features=outputs.features)

    # -- inputs ----------------------------------------------------------------------------
    def _on_image(self, name_of):
        """The mismatch check of each raw image: the first mismatch is noted, and warned about
        once the batch has run (:meth:`_warn_mismatch`)."""
        def check(index: int, size: tuple[int, int], channels: int) -> None:
            want = self.expected
            if self._warned or self._mismatch is not None:
                return
            if channels != want.channels or (want.size is not None and tuple(size) != want.size):
                self._mismatch = (f"{name_of(index)}: {size[0]}x{size[1]} with {channels} channel(s), but the model "
                                  f"was trained on {want.describe()}; converting it as the evaluation transform does "
                                  "(predictions may be poor; warned once)")
        return check

    def warn_input_mismatch(self) -> None:
        """Issue the noted size / channel mismatch as an :class:`InputMismatchWarning` (once per
        predictor)."""
        if self._mismatch is not None and not self._warned:
            self._warned = True
            message, self._mismatch = self._mismatch, None
            warnings.warn(message, InputMismatchWarning, stacklevel=4)

    def image_dataset(self, sources: Sequence[Any], names: Sequence[str]) -> ImageSources:
        """A dataset of images (paths, PIL images, uint8 ``(H, W[, C])`` arrays) through the
        model's evaluation transform; warns (once) on a size or channel mismatch."""
        from oltr.train.transforms import build_transform, image_mode

        return ImageSources(sources, build_transform(self.config, train=False), image_mode(self.config),
                            on_image=self._on_image(lambda i: names[i]))

    def _classify(self, features: torch.Tensor) -> Outputs:
        if features.dim() != 2 or features.shape[1] != self.model.feat_dim:
            raise InputError(f"features must be (N, {self.model.feat_dim}); got {tuple(features.shape)}")
        if not torch.isfinite(features).all():
            raise InputError("features contain NaN or Inf")
        return self.runner.classify_all(features, self.batch_size)

    def run_dataset(self, dataset: Dataset) -> Outputs:
        """Outputs of a dataset of ``(image, label, ...)`` items, in order."""
        if len(cast(Sized, dataset)) == 0:  # torch's Dataset declares no __len__; ours have one
            return Outputs.empty(self.model.num_classes, self.model.feat_dim, self.runner.has_reachability)
        outputs = self.runner.run(DataLoader(dataset, batch_size=self.batch_size, shuffle=False))
        self.warn_input_mismatch()
        return outputs

    # -- enrollment ------------------------------------------------------------------------
    def enroll(self, x: Any, class_name: str, *, imprint: str = "mean") -> int:
        """Add the class ``class_name`` from its examples ``x`` (paths, PIL images, uint8 arrays,
        model inputs ``(N, C, H, W)`` or features ``(N, D)``, as :meth:`predict` takes them;
        images must have the training images' size and mode); returns its label, K. The
        class names, training counts (the examples) and ``checkpoint["enrolled"]`` follow;
        :meth:`save` writes the enlarged model. ``imprint``: the cosine row, ``"mean"`` or
        ``"calibrated"`` (see :mod:`oltr.model.enrollment` and docs/enrollment.md).

        Raises:
            InputError: no example, a missing file, a mismatched image, NaN, a wrong feature
                dimension, or a name that is empty or already a class.
        """
        from oltr.inference.enrollment import enroll

        return enroll(self, x, class_name, imprint=imprint)

    def forget(self, label: int) -> None:
        """Remove class ``label``; every later label moves down by one (names and counts too).
        Raises InputError for a label outside ``[0, K)`` or the only class."""
        from oltr.inference.enrollment import forget

        forget(self, label)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model as it is now (after :meth:`enroll` / :meth:`forget`) with its class
        names as a new model checkpoint at ``path``, atomically; ``path`` must not be the
        checkpoint this predictor was loaded from (:class:`oltr._paths.OutputOverwritesInputError`)."""
        from oltr.inference.enrollment import save

        return save(self, path)

    # -- the API ---------------------------------------------------------------------------
    def predict_features(self, features: Any, names: Optional[Sequence[str]] = None) -> Prediction:
        """Predictions for direct features float ``(N, D)`` (numpy or torch; no backbone)."""
        if isinstance(features, torch.Tensor):
            tensor = features.detach().cpu()
        else:
            array = np.asarray(features)
            if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
                raise InputError(f"features must be real numbers; got {array.dtype}")
            tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensor = tensor.to(torch.float32)
        outputs = self._classify(tensor)
        labels = list(names) if names is not None else [f"features[{i}]" for i in range(len(outputs))]
        return self.decide(outputs, labels)

    def predict(self, x: Any, names: Optional[Sequence[str]] = None) -> Prediction:
        """Predictions for ``x``:

        * a path (``str`` / ``Path``) or a sequence of paths / PIL images / uint8 arrays;
        * a uint8 numpy array or tensor of images (layouts: :mod:`oltr.inference.inputs`);
        * a float tensor ``(N, C, H, W)``: already-transformed model inputs;
        * float features ``(N, D)`` (numpy or torch, D = the model's feature size): see
          :meth:`predict_features`.

        Raises:
            InputError: a missing file, or an array that fits neither images nor features.
        """
        if isinstance(x, (str, os.PathLike)):
            x = [x]
        if isinstance(x, torch.Tensor):
            if x.dtype == torch.uint8:
                x = x.cpu().numpy()
            elif x.dim() == 2:
                return self.predict_features(x, names)
            elif x.dim() == 4:
                images = x.detach().to(torch.float32)
                dataset = torch.utils.data.TensorDataset(images, torch.full((images.shape[0],), -1))
                return self.decide(self.run_dataset(dataset), list(names) if names is not None
                                   else [f"tensor[{i}]" for i in range(images.shape[0])])
            else:
                raise InputError(f"a float tensor must be features (N, {self.model.feat_dim}) or model inputs "
                                 f"(N, C, H, W); got shape {tuple(x.shape)}")
        if isinstance(x, np.ndarray):
            if x.dtype == np.uint8:
                sources: list[Any] = split_uint8(x)
            elif x.ndim == 2 and x.shape[1] == self.model.feat_dim:
                return self.predict_features(x, names)
            else:
                raise InputError(f"expected features (N, {self.model.feat_dim}) or uint8 images; "
                                 f"got {x.dtype} {x.shape}")
        else:
            sources = list(x)
            if not sources:
                raise InputError("no inputs given")
            check_paths([s for s in sources if isinstance(s, (str, os.PathLike))])
            sources = [s for part in sources for s in (split_uint8(part) if isinstance(part, np.ndarray) else [part])]
        labels = list(names) if names is not None else [source_name(s, i) for i, s in enumerate(sources)]
        if len(labels) != len(sources):
            raise InputError(f"{len(labels)} names for {len(sources)} inputs")
        return self.decide(self.run_dataset(self.image_dataset(sources, labels)), labels)

"""The typed training config: one frozen dataclass per YAML section.

Each field carries its default, a one-line meaning (``doc``), whether it is a filesystem path
(``path``, resolved against the folder of the file that states it) and its allowed range
(``check``). These are the one source for loading, validation and the generated reference
table (``docs/config-reference.md``). Defaults are the official ImageNet-LT stage-1 recipe
where the official code has one (OLTR.md §5).
"""
from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

from oltr.train.config._view import FrozenMapping, Section

__all__ = [
    "CentroidsConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "Interval",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "SamplerConfig",
    "field_types",
    "is_section_type",
    "resource_limit",
]


def resource_limit() -> int:
    """Largest ``num_workers`` / ``threads`` a config may ask for: ``max(8, 2 × CPU count)``."""
    return max(8, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Interval:
    """Allowed range of a number; ``high`` may be a function (a bound of this machine)."""

    low: Optional[float] = None
    high: Union[float, Callable[[], int], None] = None
    low_open: bool = False
    high_open: bool = False
    high_text: Optional[str] = None  # how a callable ``high`` is written in messages and docs

    def upper(self) -> Optional[float]:
        return self.high() if callable(self.high) else self.high

    def contains(self, value: float) -> bool:
        high = self.upper()
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return high is None or (value < high if self.high_open else value <= high)

    def describe(self) -> str:
        """``> 0``, ``>= 1``, ``in (0, 1]``, ``in [0, max(8, 2 × CPUs)]`` ..."""
        high = self.high_text or (None if self.high is None else _number(self.upper()))
        low = None if self.low is None else _number(self.low)
        if high is None:
            return f"{'>' if self.low_open else '>='} {low}"
        if low is None:
            return f"{'<' if self.high_open else '<='} {high}"
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: Optional[float]) -> str:
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


_POSITIVE = Interval(low=0, low_open=True)          # > 0
_AT_LEAST_ONE = Interval(low=1)                     # >= 1
_NON_NEGATIVE = Interval(low=0)                     # >= 0
_FRACTION = Interval(low=0, high=1)                 # in [0, 1]
_KEEP = Interval(low=0, high=1, low_open=True)      # in (0, 1]
_MOMENTUM = Interval(low=0, high=1, high_open=True)  # in [0, 1)
_SEED = Interval(low=0, high=2**63 - 1, high_text="2^63 - 1")
_RESOURCE = Interval(low=0, high=resource_limit, high_text="max(8, 2 × CPU count)")
_THREADS = Interval(low=1, high=resource_limit, high_text="max(8, 2 × CPU count)")


def setting(default: Any, doc: str, *, path: bool = False, check: Optional[Interval] = None) -> Any:
    """A config field: its default, meaning, path flag and allowed range (field metadata)."""
    metadata = {"doc": doc, "path": path, "check": check}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: FrozenMapping(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _about(doc: str) -> dict[str, Any]:
    """Metadata of a nested section field (its defaults are the section's)."""
    return {"doc": doc, "path": False, "check": None}


@dataclass(frozen=True, eq=False)
class DataConfig(Section):
    """``data``: where the images and their list files are and how they are read."""

    source: Literal["lists", "fashion_lt", "digits_lt"] = setting(
        "lists", "lists: list files below; fashion_lt / digits_lt: an embedded data set")
    root: str = setting("", "Folder the list files' image paths are relative to ('' = as listed).",
                        path=True)
    open_root: str = setting("", "Folder of the open-set images ('' = data.root).", path=True)
    train_list: str = setting("", "List file of the training images ('path label' per line).",
                              path=True)
    val_list: str = setting("", "List file of the validation images.", path=True)
    test_list: str = setting("", "List file of the test images.", path=True)
    open_list: str = setting("", "List file of the open-set images (labels -1; '' = none).",
                             path=True)
    transform: Literal["imagenet", "none"] = setting(
        "imagenet", "imagenet: the official RGB crops and normalisation; none: grayscale, resized")
    image_size: int = setting(224, "Side of the square image the network sees.",
                              check=_AT_LEAST_ONE)
    resize: int = setting(256, "Test-time resize before the centre crop (imagenet transform).",
                          check=_AT_LEAST_ONE)
    skip_missing: bool = setting(False, "Skip listed images that are missing instead of failing.")
    seed: int = setting(0, "Seed of an embedded data set's split.", check=_SEED)


@dataclass(frozen=True, eq=False)
class ModelConfig(Section):
    """``model``: the network (oltr.model.create_model) and its initial weights."""

    backbone: str = setting("resnet10", "Backbone name (resnet10, resnet152, cnn28, cnn8, ...).")
    num_classes: int = setting(1000, "Number of known classes K.", check=_AT_LEAST_ONE)
    feat_dim: Optional[int] = setting(None, "Feature size D (null = the backbone's, 512 for the ResNets).",
                                      check=_AT_LEAST_ONE)
    use_modulatedatt: Optional[bool] = setting(
        None, "Modulated attention (null = the stage's official default).")
    use_fc: Optional[bool] = setting(None, "The fc_add layer after the backbone (null = official default).")
    init: Optional[str] = setting(
        None, "Initial weights: stage 1 a pretrained backbone file; stages oltr, crt, lws the stage-1 best.pt "
        "(required for crt and lws).",
        path=True)
    fix_backbone: bool = setting(False, "Train only modulatedatt and fc_add of the backbone (official 'fix').")
    options: Mapping[str, Any] = setting({}, "Extra keyword arguments of oltr.model.create_model.")


@dataclass(frozen=True, eq=False)
class SamplerConfig(Section):
    """``sampler``: the order of the training images."""

    kind: Literal["shuffle", "class_aware", "square_root", "progressive"] = setting(
        "shuffle", "shuffle: instance-balanced (stage 1); class_aware: class-balanced (stage 2, cRT, LWS); "
        "square_root: classes drawn in proportion to sqrt(count); progressive: instance- to class-balanced "
        "over the epochs (Kang et al. 2020)")
    samples_per_class: int = setting(4, "Consecutive samples drawn per class (class_aware).",
                                     check=_AT_LEAST_ONE)


@dataclass(frozen=True, eq=False)
class OptimConfig(Section):
    """``optim``: the model's SGD (one param group per network) and its StepLR."""

    feat_lr: float = setting(0.1, "Learning rate of the backbone (feat_model).", check=_POSITIVE)
    classifier_lr: float = setting(0.1, "Learning rate of the classifier.", check=_POSITIVE)
    momentum: float = setting(0.9, "SGD momentum.", check=_MOMENTUM)
    weight_decay: float = setting(0.0005, "SGD weight decay.", check=_NON_NEGATIVE)
    schedule: Literal["step", "cosine"] = setting(
        "step", "The model's schedule, stepped after each epoch: step: StepLR (step_size, gamma); "
        "cosine: cosine annealing from the learning rates to end_lr over the epochs")
    step_size: int = setting(10, "StepLR: epochs between learning-rate decays.", check=_AT_LEAST_ONE)
    gamma: float = setting(0.1, "StepLR: factor applied at each decay.", check=_KEEP)
    end_lr: float = setting(0.0, "Cosine schedule: learning rate after the last epoch.", check=_NON_NEGATIVE)


@dataclass(frozen=True, eq=False)
class CentroidsConfig(Section):
    """``centroids``: stage 2's memory, its DiscCentroidsLoss and its own SGD."""

    lr: float = setting(0.01, "Learning rate of the centroids' SGD.", check=_POSITIVE)
    momentum: float = setting(0.9, "Momentum of the centroids' SGD.", check=_MOMENTUM)
    weight_decay: float = setting(0.0005, "Weight decay of the centroids' SGD.", check=_NON_NEGATIVE)
    step_size: Optional[int] = setting(
        None, "StepLR step of the centroids (null = optim.step_size, as the official code).",
        check=_AT_LEAST_ONE)
    gamma: Optional[float] = setting(
        None, "StepLR factor of the centroids (null = optim.gamma, as the official code).", check=_KEEP)
    gradient: Literal["official", "autograd"] = setting(
        "official", "official: the custom attract backward; autograd: plain autograd")
    repel_margin: float = setting(10.0, "DiscCentroidsLoss hinge margin.", check=_NON_NEGATIVE)
    repel_weight: float = setting(0.01, "Weight of the repel term inside DiscCentroidsLoss.",
                                  check=_NON_NEGATIVE)


@dataclass(frozen=True, eq=False)
class LossConfig(Section):
    """``loss``: the classification loss and the weights of the training loss terms."""

    kind: Literal["ce", "balanced_softmax", "logit_adjusted"] = setting(
        "ce", "ce: softmax cross-entropy; balanced_softmax: CE(logits + log prior) (Ren et al. 2020); "
        "logit_adjusted: CE(logits + tau * log prior) (Menon et al. 2021); prior = training class counts")
    tau: float = setting(1.0, "Strength of the logit_adjusted loss (1 = Balanced Softmax).", check=_NON_NEGATIVE)
    ce_weight: float = setting(1.0, "Weight of the classification loss (loss.kind).", check=_NON_NEGATIVE)
    centroid_weight: float = setting(0.01, "Weight of DiscCentroidsLoss (stage 2).", check=_NON_NEGATIVE)


@dataclass(frozen=True, eq=False)
class EvalConfig(Section):
    """``eval``: thresholds and shot groups of the evaluation."""

    open_threshold: float = setting(0.1, "Official fixed threshold on the max softmax probability.",
                                    check=_FRACTION)
    val_keep: float = setting(0.95, "Validation-chosen thresholds keep this fraction of known val samples.",
                              check=_KEEP)
    many_shot: int = setting(100, "Classes with at least this many training images are many-shot.",
                             check=_NON_NEGATIVE)
    few_shot: int = setting(20, "Classes with at most this many training images are few-shot (< many_shot).",
                            check=_NON_NEGATIVE)
    paper_groups: bool = setting(False, "true: the paper's >100 / <20 groups instead of the code's >=100 / <=20.")
    batch_size: int = setting(256, "Batch size of evaluation.", check=_AT_LEAST_ONE)


@dataclass(frozen=True, eq=False)
class Config(Section):
    """A complete training config (one stage). Build it with :func:`oltr.train.load_config`.

    A frozen dataclass and a read-only ``Mapping`` at once: ``config.optim.gamma ==
    config["optim"]["gamma"]``; :meth:`to_dict` gives the plain dict. Constructing one checks
    every value (types and ranges) and raises :class:`ConfigError` naming the key.
    """

    name: str = setting("run", "Run name (progress lines and logs).")
    stage: Literal["plain", "oltr", "crt", "lws"] = setting(
        "plain", "plain: stage 1 (plain classifier); oltr: stage 2 (meta-embedding, memory); crt / lws: "
        "classifier-only stage on the frozen stage-1 backbone of model.init (Kang et al. 2020): crt a "
        "re-initialised linear classifier, lws learned per-class scales of the stage-1 classifier")
    seed: int = setting(0, "Seed of Python, NumPy and torch.", check=_SEED)
    device: Literal["auto", "cpu", "cuda"] = setting("auto", "auto: CUDA when available, else CPU.")
    out_dir: str = setting("runs/run", "Run folder: best.pt, last.pt, log.jsonl, config.yaml.", path=True)
    epochs: int = setting(30, "Training epochs.", check=_AT_LEAST_ONE)
    batch_size: int = setting(128, "Global training batch (split across ranks under torch.distributed).",
                              check=_AT_LEAST_ONE)
    num_workers: int = setting(0, "DataLoader worker processes.", check=_RESOURCE)
    threads: Optional[int] = setting(None, "torch CPU threads (null = torch's default).", check=_THREADS)
    steps_per_epoch: Optional[int] = setting(
        None, "Steps per epoch (null = int(len(train) / batch_size), as the official code).",
        check=_AT_LEAST_ONE)
    progress: bool = setting(True, "Show progress while training.")
    data: DataConfig = field(default_factory=DataConfig,
                             metadata=_about("Data set, list files and transforms."))
    model: ModelConfig = field(default_factory=ModelConfig,
                               metadata=_about("Network and initial weights."))
    sampler: SamplerConfig = field(default_factory=SamplerConfig,
                                   metadata=_about("Order of the training images."))
    optim: OptimConfig = field(default_factory=OptimConfig,
                               metadata=_about("Model optimiser and schedule."))
    centroids: CentroidsConfig = field(default_factory=CentroidsConfig,
                                       metadata=_about("Stage 2's memory and its optimiser."))
    loss: LossConfig = field(default_factory=LossConfig,
                             metadata=_about("Loss weights."))
    eval: EvalConfig = field(default_factory=EvalConfig,
                             metadata=_about("Evaluation thresholds and shot groups."))

    def __post_init__(self) -> None:
        from oltr.train.config._checks import check_config

        check_config(self)

    @property
    def centroid_schedule(self) -> tuple[int, float]:
        """``(step_size, gamma)`` of the centroids' StepLR: ``centroids.*`` where set, else
        ``optim.*`` (the official code steps both optimisers with one schedule)."""
        c = self.centroids
        return (self.optim.step_size if c.step_size is None else c.step_size,
                self.optim.gamma if c.gamma is None else c.gamma)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """``{field name: resolved type annotation}`` of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def is_section_type(tp: Any) -> bool:
    """Whether a field type is a nested config section."""
    return isinstance(tp, type) and issubclass(tp, Section)


"""The two-stage trainer: the official recipe driven by a config.

Per step (``run_networks.py:192-208``)::

    logits, extras = model(images, centroids=criterion.centroids)      # stage 2: live memory, detached inside
    loss = ce_weight * L(logits, labels) + centroid_weight * criterion(extras.direct, labels)   # stage 2

``L`` is ``loss.kind`` (:func:`oltr.train.losses.build_loss`: cross-entropy, Balanced Softmax or
the logit-adjusted loss). Stages ``crt`` / ``lws`` (:mod:`oltr.train.classifier_stage`) train
only the classifier on the frozen stage-1 backbone (kept in eval mode).
    model_optimizer.zero_grad(); criterion_optimizer.zero_grad(); loss.backward()
    model_optimizer.step(); criterion_optimizer.step()

After every epoch both schedules step, the model is evaluated on val (closed set; stage 2 with
the live memory) and the best-by-val-top-1 weights and memory are kept. An epoch is
``steps_per_epoch`` steps (default ``int(len(train) / batch_size)``, as the official code,
even with the class-aware sampler).

Files in ``out_dir`` (rank 0 only): ``best.pt`` (model checkpoint, see
:func:`oltr.train.checkpoints.load_model_checkpoint`), ``last.pt`` (resume state, after every
epoch), ``log.jsonl`` (one JSON object per epoch), ``config.yaml``.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import yaml

from oltr.inference import (
    Outputs,
    Rejection,
    choose_group_thresholds,
    choose_thresholds,
    evaluate_outputs,
    json_ready,
    outlier_scores,
)
from oltr.inference.report import shot_options
from oltr.metrics.evaluate import GROUP_SUFFIX
from oltr.model import OLTRModel, create_model, init_from_stage1
from oltr.nn import DiscCentroidsLoss
from oltr.train import distributed as dist_seam
from oltr.train.checkpoints import (
    BEST_NAME,
    LAST_NAME,
    MODEL_FORMAT,
    RESUME_FORMAT,
    CheckpointError,
    load_model_checkpoint,
    load_resume_state,
    remove_stale_temps,
    save_checkpoint,
)
from oltr.train.config import Config, ConfigError, apply_overrides, as_config
from oltr.train.config._checks import CLASSIFIER_STAGES
from oltr.train.data import DataBundle, EpochSampler, build_data, eval_loader, steps_per_epoch, train_loader
from oltr.train.ddp import wrap_model
from oltr.train.gather import gather_outputs, run_shard
from oltr.train.memory_init import global_class_means
from oltr.train.progress import EpochProgress, JsonlLogger
from oltr.train.rng import capture_rng_state, restore_rng_state, seed_everything
from oltr.train.sync_centroid_loss import DistributedDiscCentroidsLoss

__all__ = ["TrainResult", "build_model", "build_optimizers", "resolve_device", "train"]

#: Config keys that may change between a run and its ``--resume``.
_RESUMABLE_CHANGES = ("epochs", "progress", "device", "num_workers", "threads", "out_dir")


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        out_dir: the run's folder; best_path: its ``best.pt``.
        best_epoch: 1-based epoch of the best val top-1; best_acc: that top-1 in [0, 1].
        epochs_run: epochs trained by this call (fewer than ``epochs`` after ``--resume``).
        history: the per-epoch log records of this call.
    """

    out_dir: Path
    best_path: Path
    best_epoch: int
    best_acc: float
    epochs_run: int
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device (use --device cpu)")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda; got {name!r}")
    return torch.device(name)


def build_model(config: Mapping[str, Any], num_classes: Optional[int] = None) -> OLTRModel:
    """The :class:`oltr.OLTRModel` of ``config`` (fresh weights; no stage-1 loading).

    Stages ``plain`` and ``crt`` build the plain model (dot-product ``fc``), ``oltr`` the
    meta-embedding one, ``lws`` the plain model with an :class:`oltr.longtail.LWSClassifier`."""
    from oltr.train.classifier_stage import model_stage

    m = config["model"]
    try:
        model = create_model(
            m["backbone"], int(num_classes or m["num_classes"]), stage=model_stage(config["stage"]),
            feat_dim=m["feat_dim"], use_attention=m["use_modulatedatt"], use_fc_add=m["use_fc"],
            **dict(m["options"]),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot build model.backbone {m['backbone']!r}: {exc}") from None
    if config["stage"] == "lws":
        from oltr.longtail.lws import LWSClassifier

        model.classifier = LWSClassifier(model.feat_dim, model.num_classes)
    return model


def _read_weights(path: str) -> Any:
    """A ``model.init`` source: an oltr ``best.pt``, an official checkpoint or a flat backbone
    state dict (the official caffe ResNet-152 file), see :func:`oltr.checkpoint.read_pretrained`."""
    from oltr.checkpoint import read_pretrained

    try:
        return load_model_checkpoint(path)["state_dict"]
    except CheckpointError:
        try:
            return read_pretrained(path)
        except FileNotFoundError:
            raise CheckpointError(f"model.init: checkpoint not found: {path!r}") from None


def _init_weights(model: OLTRModel, config: Mapping[str, Any]) -> Optional[str]:
    """Load ``model.init``: stage 2 → official ``utils.init_weights`` from stage 1 (backbone
    keys present + ``fc_hallucinator`` ← ``fc``); stage 1 → backbone keys only (pretrained)."""
    path = config["model"]["init"]
    if not path:
        return None
    source = _read_weights(path)
    if config["stage"] in CLASSIFIER_STAGES:
        from oltr.train.classifier_stage import init_classifier_stage

        return init_classifier_stage(model, source, config["stage"], path)
    if model.stage == "oltr":
        report = init_from_stage1(model, source)
        return f"{len(report.copied)} backbone tensors from {path}, fresh: {len(report.kept)}"
    from oltr.model.stage_init import init_backbone

    report = init_backbone(model, source)
    return f"{len(report.copied)} backbone tensors from {path}, fresh: {len(report.kept)}"


def build_optimizers(
    config: Mapping[str, Any], model: OLTRModel, criterion: Optional[DiscCentroidsLoss]
) -> tuple[torch.optim.Optimizer, Any, Optional[torch.optim.Optimizer], Any]:
    """``(model_optimizer, model_scheduler, criterion_optimizer, criterion_scheduler)``.

    The model optimiser is one SGD with a param group per network (feat_model at
    ``optim.feat_lr``, classifier at ``optim.classifier_lr``); the criterion optimiser is a
    separate SGD over the centroids (``centroids.*``); each has its own schedule (the model's:
    ``optim.schedule``, StepLR or cosine annealing over ``epochs`` to ``optim.end_lr``; the
    centroids': StepLR). Frozen parameters (``fix_backbone``; the backbone of the ``crt`` /
    ``lws`` stages) stay in their group and get no gradient: SGD leaves them untouched.
    """
    o = config["optim"]
    groups = [
        {"params": list(model.feat_model.parameters()), "lr": o["feat_lr"]},
        {"params": list(model.classifier.parameters()), "lr": o["classifier_lr"]},
    ]
    model_opt = torch.optim.SGD(groups, lr=o["feat_lr"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    model_sched: torch.optim.lr_scheduler.LRScheduler
    if o["schedule"] == "cosine":
        model_sched = torch.optim.lr_scheduler.CosineAnnealingLR(model_opt, T_max=int(config["epochs"]),
                                                                 eta_min=o["end_lr"])
    else:
        model_sched = torch.optim.lr_scheduler.StepLR(model_opt, step_size=o["step_size"], gamma=o["gamma"])
    if criterion is None:
        return model_opt, model_sched, None, None
    c = config["centroids"]
    crit_opt = torch.optim.SGD(criterion.parameters(), lr=c["lr"], momentum=c["momentum"],
                               weight_decay=c["weight_decay"])
    step_size, gamma = as_config(config).centroid_schedule  # unset: optim's, as officially
    crit_sched = torch.optim.lr_scheduler.StepLR(crit_opt, step_size=step_size, gamma=gamma)
    return model_opt, model_sched, crit_opt, crit_sched


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in _RESUMABLE_CHANGES}


class _Run:
    """State of one training stage (model, criterion, optimisers, best record)."""

    def __init__(self, config: Config, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.out_dir = Path(config["out_dir"])
        seed_everything(int(config["seed"]))
        self.data: DataBundle = build_data(config)
        self.model = build_model(config, self.data.num_classes).to(device)
        self.criterion: Optional[DiscCentroidsLoss] = None
        if self.model.stage == "oltr":
            loss_class = DistributedDiscCentroidsLoss if dist_seam.is_distributed() else DiscCentroidsLoss
            c = config["centroids"]
            self.criterion = loss_class(
                self.data.num_classes, self.model.feat_dim, repel_margin=c["repel_margin"],
                repel_weight=c["repel_weight"], gradient=c["gradient"],
            ).to(device)
        if config["model"]["fix_backbone"]:
            self.model.freeze_backbone()
        #: crt / lws: the backbone is frozen exactly (no gradient, BatchNorm in eval mode)
        self.classifier_only = config["stage"] in CLASSIFIER_STAGES
        if self.classifier_only:
            from oltr.train.classifier_stage import freeze_for_classifier_stage

            freeze_for_classifier_stage(self.model, config["stage"])
        from oltr.train.losses import build_loss

        self.loss_fn = build_loss(config, self.data.train_counts).to(device)
        # DDP under torchrun (identity in one process): the module the training steps call
        self.step_model = wrap_model(self.model, device)
        self.model_opt, self.model_sched, self.crit_opt, self.crit_sched = build_optimizers(
            config, self.model, self.criterion)
        self.loader = train_loader(config, self.data)
        self.val_loader = eval_loader(config, self.data.val, shard=True)
        self.logger = JsonlLogger(self.out_dir / "log.jsonl", echo=bool(config["progress"]))
        self.epoch = 0                      # epochs finished
        self.best: dict[str, Any] = {"epoch": 0, "acc": -1.0, "state_dict": None}

    # -- initialisation ----------------------------------------------------------------
    def initialise(self) -> None:
        """Stage-1 weights (``model.init``) and, in stage 2, the memory from class means."""
        message = _init_weights(self.model, self.config)
        if message:
            self.logger.log(event="init", stage=self.model.stage, detail=message)
        if self.criterion is not None:
            plain = eval_loader(self.config, self.data.train_plain, shard=True)
            centroids = global_class_means(self.model, plain, self.data.num_classes)
            self.criterion.centroids.data.copy_(centroids.to(self.device))
            self.model.set_memory(centroids)

    def resume_from(self, state: dict[str, Any]) -> None:
        """Put back the resume state of ``last.pt`` (weights, optimisers, RNG, best record)."""
        if _comparable(state["config"]) != _comparable(self.config):
            diff = sorted(k for k in set(state["config"]) | set(self.config)
                          if k not in _RESUMABLE_CHANGES and state["config"].get(k) != self.config.get(k))
            raise ConfigError(f"--resume: the config differs from the run in {str(self.out_dir)!r} at {diff}")
        self.model.load_state_dict(state["model"])
        self.model_opt.load_state_dict(state["model_optimizer"])
        self.model_sched.load_state_dict(state["model_scheduler"])
        if self.criterion is not None and self.crit_opt is not None:  # built together (build_optimizers)
            self.criterion.load_state_dict(state["criterion"])
            self.crit_opt.load_state_dict(state["criterion_optimizer"])
            self.crit_sched.load_state_dict(state["criterion_scheduler"])
        self.best = state["best"]
        self.epoch = int(state["epoch"])
        restore_rng_state(state["rng"])

    # -- training ----------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.config, self.data)

    def train_epoch(self) -> EpochProgress:
        cfg = self.config
        steps = self.steps_per_epoch()
        sampler = self.loader.sampler
        assert isinstance(sampler, EpochSampler), "train_loader builds only samplers with set_epoch"
        sampler.set_epoch(self.epoch)
        dist_seam.reseed_for_epoch(int(cfg["seed"]), self.epoch)  # per-rank augmentation draws (DDP only)
        self.model.train()
        if self.classifier_only:
            self.model.feat_model.eval()  # BatchNorm statistics of the frozen backbone stay
        progress = EpochProgress(
            steps, f"{cfg['name']} {self.model.stage} epoch {self.epoch + 1}/{cfg['epochs']}",
            enabled=bool(cfg["progress"]))
        for step, (images, labels, *_rest) in enumerate(self.loader):
            if step == steps:
                break
            images = images.to(self.device, non_blocking=True)
            labels = torch.as_tensor(labels).to(self.device, dtype=torch.int64)
            centroids = self.criterion.centroids if self.criterion is not None else None
            logits, extras = self.step_model(images, centroids=centroids)
            loss = cfg["loss"]["ce_weight"] * self.loss_fn(logits, labels)
            if self.criterion is not None:
                loss = loss + cfg["loss"]["centroid_weight"] * self.criterion(extras.direct, labels)
            self.model_opt.zero_grad(set_to_none=True)
            if self.crit_opt is not None:
                self.crit_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.model_opt.step()
            if self.crit_opt is not None:
                self.crit_opt.step()
            with torch.no_grad():
                correct = int((logits.argmax(1) == labels).sum())
            progress.update(float(loss.detach()), correct, int(labels.shape[0]))
        progress.close()
        if dist_seam.is_distributed():  # the epoch's loss, accuracy and speed over all ranks
            totals = dist_seam.all_reduce_sum(torch.tensor(
                [progress.loss_sum, progress.correct, progress.seen], dtype=torch.float64))
            progress.loss_sum, progress.correct, progress.seen = float(totals[0]), int(totals[1]), int(totals[2])
        self.model_sched.step()
        if self.crit_sched is not None:
            self.crit_sched.step()
        return progress

    def live_centroids(self) -> Optional[torch.Tensor]:
        return None if self.criterion is None else self.criterion.centroids.detach()

    def validate(self) -> Outputs:
        return gather_outputs(run_shard(self.model, self.val_loader, self.device, centroids=self.live_centroids()))

    def record_best(self, val: Outputs, acc: float) -> bool:
        """Keep the weights and memory if ``acc`` beats the best so far (strict ``>``, as the
        official code; the first epoch always counts, where the official code would raise a
        NameError if val top-1 never exceeded 0, docs/official-differences.md D17)."""
        if acc <= self.best["acc"]:
            return False
        if self.criterion is not None:
            self.model.set_memory(self.criterion.centroids)
        self.best = {
            "epoch": self.epoch, "acc": acc,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
        }
        self.write_best(val, feature_means=None)
        return True

    def thresholds(self, val: Outputs) -> dict[str, Any]:
        """Per outlier score, the threshold keeping ``eval.val_keep`` of ``val`` (``"<score>"``)
        and one per shot group of the predicted class (``"<score>@groups"``), and the official
        ``open_threshold``."""
        scores = outlier_scores(val.logits, val.reachability)
        keep = float(self.config["eval"]["val_keep"])
        chosen: dict[str, Any] = dict(choose_thresholds(scores, keep))
        by_group = choose_group_thresholds(scores, val.logits.argmax(axis=1), self.data.train_counts, keep,
                                           **shot_options(self.config["eval"]))
        chosen.update({f"{name}{GROUP_SUFFIX}": t for name, t in by_group.items()})
        chosen["open_threshold"] = float(self.config["eval"]["open_threshold"])
        return chosen

    def write_best(self, val: Outputs, feature_means: Optional[torch.Tensor]) -> None:
        """``best.pt`` from the best record; thresholds from the best model's val outputs."""
        state = self.best["state_dict"]
        centroids = state["centroids"] if self.model.stage == "oltr" else None
        if not dist_seam.is_main():
            return
        thresholds = self.thresholds(val)
        # the rule oltr predict applies by default: the msp threshold chosen on val
        rejection = Rejection.from_checkpoint({"thresholds": thresholds})
        val_report = json_ready(evaluate_outputs(val, self.data.train_counts, self.config["eval"], thresholds,
                                                 meta={"split": "val", "epoch": int(self.best["epoch"]) + 1}))
        save_checkpoint({
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            "class_names": list(self.data.class_names),
            "train_class_counts": [int(c) for c in self.data.train_counts],
            "state_dict": state,
            "centroids": centroids,
            "feature_means": feature_means,
            "epoch": int(self.best["epoch"]) + 1,
            "best_acc": float(self.best["acc"]),
            "thresholds": thresholds,
            "rejection": rejection.to_dict(),
            "val_report": val_report,
            "complete": feature_means is not None or self.model.stage == "oltr",
        }, self.out_dir / BEST_NAME)

    def write_last(self) -> None:
        if not dist_seam.is_main():
            return
        state = {
            "format": RESUME_FORMAT,
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "model_optimizer": self.model_opt.state_dict(),
            "model_scheduler": self.model_sched.state_dict(),
            "rng": capture_rng_state(),
            "best": self.best,
        }
        if self.criterion is not None and self.crit_opt is not None:  # built together (build_optimizers)
            state.update(criterion=self.criterion.state_dict(),
                         criterion_optimizer=self.crit_opt.state_dict(),
                         criterion_scheduler=self.crit_sched.state_dict())
        save_checkpoint(state, self.out_dir / LAST_NAME)

    def finalise(self) -> None:
        """Rewrite ``best.pt`` with the best weights' val thresholds; for the plain model also
        the class means of its training features (its reachability score's centroids)."""
        self.model.load_state_dict(self.best["state_dict"])
        feature_means = None
        if self.model.stage == "plain":
            plain = eval_loader(self.config, self.data.train_plain, shard=True)
            feature_means = global_class_means(self.model, plain, self.data.num_classes).cpu()
        val = gather_outputs(run_shard(self.model, self.val_loader, memory=feature_means))
        self.write_best(val, feature_means)


def train(config: Mapping[str, Any], resume: bool = False, device: Optional[str] = None) -> TrainResult:
    """Train one stage as ``config`` says; see the module docstring.

    Args:
        config: a complete config (:func:`oltr.train.load_config`).
        resume: continue from ``out_dir/last.pt`` if it exists (same config required, except
            ``epochs``, ``progress``, ``device``, ``num_workers``); the result equals an
            uninterrupted run's.
        device: overrides ``config["device"]`` (``auto``, ``cpu``, ``cuda``).

    Returns:
        :class:`TrainResult`.
    """
    config = apply_overrides(config, [] if device is None else [f"device={device}"])  # validated, frozen
    if config["threads"]:
        torch.set_num_threads(int(config["threads"]))
    run = _Run(config, resolve_device(config["device"]))
    out_dir = run.out_dir
    last = out_dir / LAST_NAME
    if resume and dist_seam.broadcast_object(last.is_file()):  # rank 0 reads; no shared folder needed
        run.resume_from(dist_seam.broadcast_object(load_resume_state(last) if dist_seam.is_main() else None))
        run.logger.log(event="resume", stage=run.model.stage, epoch=run.epoch)
    else:
        if resume:
            run.logger.log(event="resume", stage=run.model.stage, epoch=0,
                           detail=f"nothing to resume in {str(out_dir)!r}: starting from scratch")
        run.initialise()
    if dist_seam.is_main():  # after the resume check, so a refused config is not recorded
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_dir)  # left by a run killed mid-write
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    history = []
    start_epoch = run.epoch
    while run.epoch < int(config["epochs"]):
        started = time.perf_counter()
        progress = run.train_epoch()
        val = run.validate()
        acc = float(np.mean(val.logits.argmax(1) == val.labels))
        improved = run.record_best(val, acc)
        record = {
            "event": "epoch", "stage": run.model.stage, "epoch": run.epoch + 1,
            "train_loss": progress.mean_loss, "train_acc": progress.accuracy, "val_top1": acc,
            "best": improved, "lr_feat": run.model_opt.param_groups[0]["lr"],
            "lr_classifier": run.model_opt.param_groups[1]["lr"],
            "samples_per_s": progress.samples_per_s, "time_s": time.perf_counter() - started,
        }
        if run.crit_opt is not None:
            record["lr_centroids"] = run.crit_opt.param_groups[0]["lr"]
        run.epoch += 1
        run.write_last()
        run.logger.log(**record)
        history.append(record)
        dist_seam.barrier()
    if run.best["state_dict"] is None:
        raise CheckpointError(f"{str(last)!r} holds no trained epoch (epochs={config['epochs']})")
    run.finalise()
    dist_seam.barrier()
    return TrainResult(
        out_dir=out_dir, best_path=out_dir / BEST_NAME, best_epoch=int(run.best["epoch"]) + 1,
        best_acc=float(run.best["acc"]), epochs_run=run.epoch - start_epoch, history=history,
    )

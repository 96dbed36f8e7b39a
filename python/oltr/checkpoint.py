"""Checkpoints of the official OLTR code (``final_model_checkpoint.pth``).

The official file is ``torch.save`` of::

    {'epoch': int, 'best_epoch': int, 'best_acc': float,
     'state_dict_best': {'feat_model': {'module.<key>': Tensor}, 'classifier': {...}},
     'centroids': Tensor (K, D) on CUDA (stage 2) | None (stage 1)}

* :func:`read_official` reads it into an :class:`OfficialCheckpoint`: zip or legacy
  (PyTorch < 1.6) serialization, CUDA-saved tensors mapped to the CPU, ``weights_only=True``
  (a file carrying pickled code raises :class:`UnsafeCheckpointError`; a truncated, corrupt
  or malformed file raises :class:`CheckpointError`; both name the path).
* :func:`load_official` builds a ready :class:`~oltr.OLTRModel` (stage and options detected
  from the keys) with its memory.
* :func:`save_official` writes the official layout (atomically), so a model trained here loads
  in the official code.
* :func:`read_pretrained` reads a ``model.init`` source: an official checkpoint, or a flat state
  dict of backbone weights (the official caffe ResNet-152 file).

Integrity: a zip checkpoint (PyTorch >= 1.6) stores a CRC-32 of every record;
:func:`load_verified` checks them all before unpickling, so a file with changed bytes raises
:class:`CheckpointError` instead of loading other numbers. A legacy (pre-1.6) file carries no
checksums: damage to its structure (truncation, a broken pickle stream) is detected, changed
bytes inside tensor data are not. Writes (:func:`write_atomically`) turn a failed write (full
disk, I/O error) into :class:`CheckpointWriteError` naming the file, and leave the previous
file intact.
"""
from __future__ import annotations

import errno
import math
import os
import pickle
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from oltr._io import atomic_save
from oltr.errors import OLTRError

__all__ = [
    "CheckpointError",
    "CheckpointWriteError",
    "OfficialCheckpoint",
    "UnsafeCheckpointError",
    "load_official",
    "load_verified",
    "read_official",
    "read_pretrained",
    "save_official",
    "verify_archive",
    "write_atomically",
]

_PREFIX = "module."


class CheckpointError(OLTRError, ValueError):
    """A checkpoint file is truncated, corrupt, or not in the official layout."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file carries pickled code or objects that ``weights_only`` loading refuses."""


class CheckpointWriteError(OLTRError, OSError):
    """Writing a checkpoint failed (disk full, I/O error); the previous file at the path is intact."""


@dataclass
class OfficialCheckpoint:
    """Contents of an official checkpoint (keys without the ``module.`` prefix, tensors on CPU).

    ``feat_model`` / ``classifier``: state dicts; ``centroids``: (K, D) float32 or ``None``;
    ``epoch``, ``best_epoch``: int or ``None``; ``best_acc``: float or ``None``; ``path``.
    """

    feat_model: "OrderedDict[str, Tensor]"
    classifier: "OrderedDict[str, Tensor]"
    centroids: Optional[Tensor]
    epoch: Optional[int]
    best_epoch: Optional[int]
    best_acc: Optional[float]
    path: str = ""

    @property
    def stage(self) -> str:
        """``"oltr"`` (meta-embedding classifier) or ``"plain"`` (``fc`` classifier)."""
        if "fc_hallucinator.weight" in self.classifier:
            return "oltr"
        if "fc.weight" in self.classifier:
            return "plain"
        raise CheckpointError(f"{self.path}: classifier keys {sorted(self.classifier)} are neither a stage-1 "
                              "(fc.*) nor a stage-2 (fc_hallucinator.*) classifier")


def _unpickling_message(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[-1] if lines else type(err).__name__


_ZIP_MAGIC = b"PK\x03\x04"


def verify_archive(path: str | os.PathLike) -> bool:
    """Check every record of a zip checkpoint against the CRC-32 its archive stores.

    Returns:
        True: a zip archive whose records all match; False: not a zip archive (a legacy
        checkpoint, which has no checksums to verify, or another file that loading rejects).

    Raises:
        CheckpointError: a zip archive that is truncated, has a damaged directory or header,
            or a record whose bytes no longer match its CRC-32; the message names the file.
        FileNotFoundError, IsADirectoryError, PermissionError: as :func:`open`.

    Costs one sequential read of the file (about 0.1 s per 100 MB from the page cache).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        if f.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
            return False
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # reads every record, compares its CRC-32 and local header
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): damaged zip "
                              f"archive: {reason}") from err
    if bad is not None:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt): record {bad!r} does not match "
                              "its CRC-32 or header; the file was changed or damaged after it was written")
    return True


def load_verified(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` after :func:`verify_archive`.

    Raises:
        CheckpointError: corrupt, truncated or unreadable file (names the path).
        UnsafeCheckpointError: the file carries pickled code or objects.
        FileNotFoundError, IsADirectoryError, PermissionError: as :func:`open`.
    """
    path = os.fspath(path)
    verify_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError as err:
        detail = _unpickling_message(err)
        if "GLOBAL" in detail:
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the file carries pickled code or objects that are not plain "
                f"tensors/containers ({detail}); load only checkpoints you trust, with torch.load(weights_only=False)"
            ) from err
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {detail}") from err
    except (EOFError, RuntimeError, zipfile.BadZipFile, KeyError, ValueError, OSError, IndexError,
            AttributeError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): "
                              f"{type(err).__name__}: {reason}") from err


def _state_dict(obj: Any, name: str, path: str) -> "OrderedDict[str, Tensor]":
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: state_dict_best[{name!r}] is a {type(obj).__name__}, not a state dict")
    out: OrderedDict[str, Tensor] = OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: state_dict_best[{name!r}] entry {key!r} is not a tensor")
        out[key[len(_PREFIX):] if key.startswith(_PREFIX) else key] = value
    return out


def _optional_number(payload: Mapping, key: str, kind: type) -> Any:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def read_official(path: str | os.PathLike) -> OfficialCheckpoint:
    """Read an official checkpoint file (see the module docstring). Tensors land on the CPU."""
    path = os.fspath(path)
    return _official(load_verified(path), path)


def _official(payload: Any, path: str) -> OfficialCheckpoint:
    if not isinstance(payload, Mapping) or "state_dict_best" not in payload:
        keys = sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointError(f"{path}: not an official OLTR checkpoint (no 'state_dict_best'; found {keys})")
    best = payload["state_dict_best"]
    if not isinstance(best, Mapping) or "feat_model" not in best or "classifier" not in best:
        found = sorted(best) if isinstance(best, Mapping) else type(best).__name__
        raise CheckpointError(f"{path}: state_dict_best must hold 'feat_model' and 'classifier', found {found}")
    centroids = payload.get("centroids")
    if centroids is not None:
        if not isinstance(centroids, Tensor) or centroids.dim() != 2:
            raise CheckpointError(f"{path}: 'centroids' must be a (K, D) tensor or None")
        centroids = centroids.to(torch.float32)
    return OfficialCheckpoint(
        feat_model=_state_dict(best["feat_model"], "feat_model", path),
        classifier=_state_dict(best["classifier"], "classifier", path),
        centroids=centroids,
        epoch=_optional_number(payload, "epoch", int),
        best_epoch=_optional_number(payload, "best_epoch", int),
        best_acc=_optional_number(payload, "best_acc", float),
        path=path,
    )


def read_pretrained(path: str | os.PathLike) -> OfficialCheckpoint:
    """A ``model.init`` source: an official OLTR checkpoint (:func:`read_official`), or a flat
    state dict of backbone weights such as the official caffe ResNet-152 file
    (``./logs/caffe_resnet152.pth``, keys ``conv1.weight``, ``layer1.0.bn1.running_mean``, ...).

    A flat file is read as the official ``utils.init_weights(caffe=True)`` reads it: its keys
    are the feature model's own names (no ``module.`` prefix) and become ``feat_model`` of the
    result, with an empty ``classifier``; :func:`oltr.model.stage_init.init_backbone` then copies
    the keys the feature model has (the file's ImageNet ``fc.*`` match none). One leniency: a
    ``module.`` prefix (a file saved from ``DataParallel``) is removed when the keys are matched,
    where the official loader would match no key and silently keep the random init.

    Raises:
        CheckpointError: corrupt file, or neither layout (the message says what was found).
        FileNotFoundError: no such file.
    """
    path = os.fspath(path)
    payload = load_verified(path)
    if isinstance(payload, Mapping) and "state_dict_best" in payload:
        return _official(payload, path)
    if isinstance(payload, Mapping) and payload and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in payload.items()):
        return OfficialCheckpoint(feat_model=OrderedDict(payload), classifier=OrderedDict(), centroids=None,
                                  epoch=None, best_epoch=None, best_acc=None, path=path)
    found = sorted(map(str, payload))[:8] if isinstance(payload, Mapping) else type(payload).__name__
    raise CheckpointError(f"{path}: neither an official OLTR checkpoint (no 'state_dict_best') nor a flat state "
                          f"dict of weights (name -> tensor); found {found}")


def write_atomically(payload: Any, path: str | os.PathLike, **save_kwargs: Any) -> str:
    """``torch.save(payload, path, **save_kwargs)`` through :func:`oltr._io.atomic_save`.

    Raises:
        CheckpointWriteError: the write failed (disk full, I/O error: torch reports these as
            ``RuntimeError`` "enforce fail at inline_container.cc" or ``OSError``); the message
            names ``path``; the previous file at ``path`` is intact and no temp file is left.
        FileNotFoundError: the folder does not exist.
    """
    path = os.fspath(path)
    try:
        atomic_save(payload, path, **save_kwargs)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise
    except (OSError, RuntimeError) as err:
        code = getattr(err, "errno", None)
        cause = "the disk is full" if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else \
            "the write failed (is the disk full?)"
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointWriteError(f"cannot write checkpoint {path!r}: {cause}; the previous file, if any, is "
                                   f"unchanged ({type(err).__name__}: {detail})") from err
    return path


def _backbone_options(backbone: str, feat: Mapping[str, Tensor], path: str) -> dict[str, Any]:
    """Constructor options the keys imply beyond attention / fc_add (input channels, sizes)."""
    options: dict[str, Any] = {}
    if backbone.startswith("resnet"):
        if "conv1.weight" in feat:
            options["in_channels"] = int(feat["conv1.weight"].shape[1])
        if "modulatedatt.fc_spatial.weight" in feat:
            positions = int(feat["modulatedatt.fc_spatial.weight"].shape[0])
            side = math.isqrt(positions)
            if side * side != positions:
                raise CheckpointError(f"{path}: attention over {positions} positions is not a square map")
            options["attention_spatial_size"] = (side, side)
    elif backbone.startswith("cnn"):
        widths = [feat[key] for key in (f"layer{i}.0.weight" for i in (1, 2, 3)) if key in feat]
        if len(widths) == 3:
            options["channels"] = tuple(int(w.shape[0]) for w in widths)
            options["in_channels"] = int(widths[0].shape[1])
    return options


def _mismatch(expected: Mapping[str, Tensor], found: Mapping[str, Tensor]) -> str:
    """A short description of how ``found`` differs from ``expected`` ('' when it fits)."""
    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [f"{k} {tuple(found[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                if k in found and tuple(found[k].shape) != tuple(v.shape)]
    parts = [f"{len(missing)} missing key(s) ({listed(missing)})" if missing else "",
             f"{len(unexpected)} unexpected key(s) ({listed(unexpected)})" if unexpected else "",
             f"{len(reshaped)} shape mismatch(es) ({listed(reshaped)})" if reshaped else ""]
    return "; ".join(p for p in parts if p)


def load_official(path: str | os.PathLike, backbone: str = "resnet10", **kw: Any):
    """A ready :class:`~oltr.OLTRModel` from an official checkpoint, in eval mode.

    The stage (``fc.*`` -> ``"plain"``, ``fc_hallucinator.*`` -> ``"oltr"``), attention
    (``modulatedatt.*``), ``fc_add``, K and D are read from the keys; ``backbone`` names the
    architecture (``"resnet10"``, ``"resnet152"``, or ``"cnn28"`` / ``"cnn8"`` for files
    written by :func:`save_official`). Weights load strictly; the memory (``centroids``
    buffer) is set from the file (required for a stage-2 file). ``kw`` go to
    :func:`oltr.model.create_model`.
    """
    from oltr.model import create_model

    ckpt = read_official(path)
    stage = ckpt.stage
    weight_key = "fc_hallucinator.weight" if stage == "oltr" else "fc.weight"
    num_classes, feat_dim = (int(v) for v in ckpt.classifier[weight_key].shape)
    options = _backbone_options(backbone, ckpt.feat_model, ckpt.path)
    options.update(kw)
    model = create_model(backbone, num_classes, stage, feat_dim=feat_dim,
                         use_attention=any(k.startswith("modulatedatt.") for k in ckpt.feat_model),
                         use_fc_add="fc_add.weight" in ckpt.feat_model, **options)
    for name, module, state in (("feat_model", model.feat_model, ckpt.feat_model),
                                ("classifier", model.classifier, ckpt.classifier)):
        problem = _mismatch(module.state_dict(), state)
        if problem:
            raise CheckpointError(f"{ckpt.path}: its {name} does not fit backbone={backbone!r}: {problem}")
        module.load_state_dict(state, strict=True)
    if ckpt.centroids is not None:
        if tuple(ckpt.centroids.shape) != (num_classes, feat_dim):
            raise CheckpointError(f"{ckpt.path}: centroids have shape {tuple(ckpt.centroids.shape)}, expected "
                                  f"({num_classes}, {feat_dim})")
        model.set_memory(ckpt.centroids)
    elif stage == "oltr":
        raise CheckpointError(f"{ckpt.path}: a stage-2 checkpoint without 'centroids' (the memory)")
    return model.eval()


def save_official(model, path: str | os.PathLike, epoch: int = 0, best_epoch: int = 0, best_acc: float = 0.0,
                  legacy: bool = False, memory_device: str = "cpu") -> str:
    """Write ``model`` (an :class:`~oltr.OLTRModel`) in the official layout: ``module.``-prefixed
    feat_model and classifier state dicts, ``centroids`` (the memory, stage 2) or ``None``
    (stage 1). Weights are saved from the CPU; the centroids from ``memory_device``: the
    official code loads without ``map_location`` and feeds the stored centroids to its CUDA
    classifier as they are (D13), so files meant for it on a GPU want ``memory_device="cuda"``
    (needs CUDA here). ``legacy=True`` uses the pre-1.6 serialization. The write is atomic.
    Returns the path."""
    if memory_device not in ("cpu", "cuda"):
        raise ValueError(f"memory_device must be 'cpu' or 'cuda', got {memory_device!r}")
    if memory_device == "cuda" and not torch.cuda.is_available():
        raise ValueError("memory_device='cuda' needs a CUDA device")
    def prefixed(module) -> "OrderedDict[str, Tensor]":
        return OrderedDict((_PREFIX + k, v.detach().cpu().clone()) for k, v in module.state_dict().items())

    payload = {
        "epoch": int(epoch),
        "best_epoch": int(best_epoch),
        "state_dict_best": {"feat_model": prefixed(model.feat_model), "classifier": prefixed(model.classifier)},
        "best_acc": float(best_acc),
        "centroids": model.centroids.detach().to(memory_device, copy=True) if model.stage == "oltr" else None,
    }
    return write_atomically(payload, path, _use_new_zipfile_serialization=not legacy)

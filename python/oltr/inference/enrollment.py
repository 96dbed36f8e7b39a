"""Enrollment for a :class:`~oltr.inference.Predictor`: examples in any input form, the checkpoint's
class names and counts kept in step, and the enlarged model written as a new checkpoint.

The model side (what a class is made of, how its rows are imprinted) is
:mod:`oltr.model.enrollment`; this module turns the predictor's inputs (paths, PIL images, uint8
arrays, model inputs, features) into the examples it takes, and updates what the checkpoint
records about the classes (``class_names``, ``train_class_counts``, ``enrolled``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from oltr.inference.inputs import ImageSources, InputError, check_paths, split_uint8

if TYPE_CHECKING:
    from oltr.inference.predictor import Predictor

__all__ = ["enroll", "enroll_command", "enrollment_examples", "forget", "save"]


def _images(predictor: Predictor, sources: list[Any]) -> torch.Tensor:
    """Model inputs (N, C, H, W) of raw images through the evaluation transform; an image whose
    size or channels differ from the training images' is an error here (a class imprinted from
    converted images would be learnt from what the model never sees at its own size)."""
    from oltr.train.transforms import build_transform, image_mode

    mismatched: list[str] = []
    want = predictor.expected

    def check(index: int, size: tuple[int, int], channels: int) -> None:
        if channels != want.channels or (want.size is not None and tuple(size) != want.size):
            source = sources[index]
            name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else f"image[{index}]"
            mismatched.append(f"{name}: {size[0]}x{size[1]} with {channels} channel(s)")

    dataset = ImageSources(sources, build_transform(predictor.config, train=False), image_mode(predictor.config),
                           on_image=check)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    if mismatched:
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise InputError(f"enrollment image {mismatched[0]}{more} does not match the training images "
                         f"({want.describe()}); give images of that size and mode")
    return images


def enrollment_examples(predictor: Predictor, x: Any) -> torch.Tensor:
    """The examples of ``x`` as the model takes them: direct features float32 ``(N, D)`` or
    model inputs ``(N, C, H, W)``. ``x``: a path or a sequence of paths / PIL images / uint8
    arrays, a uint8 array or tensor of images, float model inputs ``(N, C, H, W)`` or float
    features ``(N, D)`` (as :meth:`Predictor.predict` takes them).

    Raises:
        InputError: no example, a missing file, an image of another size or mode than the
            training images, or an array that is neither images nor features.
    """
    feat_dim = predictor.model.feat_dim
    if isinstance(x, (str, os.PathLike)):
        x = [x]
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.uint8:
            x = x.cpu().numpy()
        elif x.dim() in (2, 4) and x.dtype.is_floating_point:
            return x.detach().cpu().to(torch.float32)
        else:
            raise InputError(f"a tensor must be features (N, {feat_dim}), model inputs (N, C, H, W) or uint8 images; "
                             f"got {x.dtype} {tuple(x.shape)}")
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint8:
            return _images(predictor, split_uint8(x))
        if x.dtype.kind == "f" and x.ndim in (2, 4):
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        raise InputError(f"expected features (N, {feat_dim}), model inputs (N, C, H, W) or uint8 images; "
                         f"got {x.dtype} {x.shape}")
    sources = list(x)
    if not sources:
        raise InputError("no examples given: enrolling a class needs at least one image")
    check_paths([s for s in sources if isinstance(s, (str, os.PathLike))])
    flat = [s for part in sources for s in (split_uint8(part) if isinstance(part, np.ndarray) else [part])]
    return _images(predictor, flat)


def enroll(predictor: Predictor, x: Any, class_name: str, imprint: str = "mean") -> int:
    """:meth:`Predictor.enroll`: returns the new label."""
    if not isinstance(class_name, str) or not class_name.strip():
        raise InputError(f"class_name must be a non-empty string, got {class_name!r}")
    names = predictor.class_names
    if class_name in names:
        raise InputError(f"class_name {class_name!r} is already class {names.index(class_name)}")
    examples = enrollment_examples(predictor, x)
    model = predictor.model
    model.class_names = list(names)
    try:
        label = model.enroll(examples, class_name, imprint=imprint)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None
    checkpoint = predictor.loaded.checkpoint
    checkpoint["class_names"] = list(model.class_names)
    checkpoint["train_class_counts"] = [*predictor.loaded.train_counts, int(examples.shape[0])]
    checkpoint["enrolled"] = [*checkpoint.get("enrolled", []),
                              {"label": label, "name": class_name, "examples": int(examples.shape[0])}]
    _memory_changed(predictor)
    return label


def forget(predictor: Predictor, label: int) -> None:
    """:meth:`Predictor.forget`: later labels move down by one."""
    model = predictor.model
    model.class_names = list(predictor.class_names)
    try:
        model.forget(label)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc)) from None
    label = int(label)
    checkpoint = predictor.loaded.checkpoint
    counts = predictor.loaded.train_counts
    checkpoint["class_names"] = list(model.class_names)
    checkpoint["train_class_counts"] = counts[:label] + counts[label + 1:]
    enrolled = []
    for entry in checkpoint.get("enrolled", []):
        if entry["label"] != label:
            enrolled.append({**entry, "label": entry["label"] - (entry["label"] > label)})
    checkpoint["enrolled"] = enrolled
    _memory_changed(predictor)


def _memory_changed(predictor: Predictor) -> None:
    """A plain model's runner reads its class means (the memory buffer) for the reachability:
    point it at the resized buffer."""
    runner = predictor.runner
    if runner.memory is not None:
        runner.memory = predictor.model.centroids.detach()


def save(predictor: Predictor, path: str | os.PathLike) -> Path:
    """:meth:`Predictor.save`: the checkpoint with the model as it is now, written atomically to
    ``path``, which must not be the checkpoint the predictor was loaded from."""
    from oltr._paths import refuse_overwrite
    from oltr.train.checkpoints import save_checkpoint

    refuse_overwrite(path, [predictor.loaded.path], what="path")
    model = predictor.model
    payload = dict(predictor.loaded.checkpoint)
    payload["state_dict"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    memory = model.centroids.detach().cpu().clone()
    payload["centroids"] = memory if model.stage == "oltr" else None
    if payload.get("feature_means") is not None:
        payload["feature_means"] = memory
    return save_checkpoint(payload, Path(path))


def _listed_images(list_file: str | os.PathLike, root: str | os.PathLike | None) -> list[Path]:
    """The images a list names: the first token of each non-blank line that is not a ``#``
    comment, relative to ``root`` (default: the list's folder)."""
    path = Path(list_file)
    if not path.is_file():
        raise InputError(f"list file not found: {str(path)!r}")
    base = Path(root) if root is not None else path.parent
    lines = path.read_text(encoding="utf-8").splitlines()
    return [base / line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def enroll_command(checkpoint: str, images: list[str] | None, list_file: str | None, root: str | None, name: str,
                   output: str, device: str, imprint: str = "mean") -> int:
    """``oltr enroll``: enroll the images as class ``name`` into ``checkpoint``; write ``output``."""
    import sys

    from oltr._paths import refuse_overwrite
    from oltr.inference.predictor import Predictor

    paths: list[str | Path] = []
    if images:
        paths.extend(images)
    elif list_file is not None:
        paths.extend(_listed_images(list_file, root))
    refuse_overwrite(output, [checkpoint, list_file, *paths], what="--output")
    check_paths(paths)  # before the model is loaded
    predictor = Predictor.from_checkpoint(checkpoint, device)
    label = predictor.enroll(paths, name, imprint=imprint)
    predictor.save(output)
    print(f"enrolled {name!r} as label {label} from {len(paths)} image(s); {len(predictor.class_names)} classes; "
          f"model: {output}", file=sys.stderr)
    return 0

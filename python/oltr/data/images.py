"""Reading image files with PIL: one loader for datasets, prediction and file checks.

* :func:`load_image` decodes a whole file, scales 16-bit images to 8 bit and names the
  file in every error (missing, undecodable, truncated, decompression bomb).
* :func:`to_8bit` is the 16-bit → 8-bit scaling, shared with the transforms.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Optional

import numpy as np

__all__ = ["is_16bit", "load_image", "to_8bit"]

#: Formats whose 32-bit ``"I"`` images hold 16-bit samples (PIL widens them to mode ``I``).
_SIXTEEN_BIT_FORMATS = ("PNG", "PPM")


def is_16bit(image: Any) -> bool:
    """True for a PIL image with 16-bit samples: modes ``I;16``, ``I;16B``, ``I;16L``,
    ``I;16N``, or mode ``I`` read from a 16-bit PNG / PGM file."""
    mode = image.mode
    return mode.startswith("I;16") or (mode == "I" and image.format in _SIXTEEN_BIT_FORMATS)


def to_8bit(image: Any) -> Any:
    """A 16-bit grayscale PIL image as mode ``"L"``, each sample ``v`` → ``round(v · 255 /
    65535)`` (0 → 0, 65535 → 255); any other image is returned unchanged.

    PIL's own ``convert("L")`` clips 16-bit samples at 255, which turns almost every
    pixel white. (16-bit RGB files are already reduced to 8-bit ``RGB`` by PIL.)
    """
    if not is_16bit(image):
        return image
    from PIL import Image

    samples = np.asarray(image).astype(np.int64)
    scaled = (np.clip(samples, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def load_image(path: str | os.PathLike, mode: Optional[str]) -> Any:
    """Decode the whole image file at ``path`` into a PIL image.

    Args:
        path: the image file.
        mode: PIL mode to convert to (``"RGB"``, ``"L"``, ...), or ``None`` to keep the
            file's mode — except that 16-bit grayscale always becomes 8-bit ``"L"``
            (:func:`to_8bit`), so every result holds 8-bit samples.

    Raises:
        FileNotFoundError: no file at ``path``.
        OSError: the file cannot be decoded (not an image, truncated, corrupt) or is larger
            than ``PIL.Image.MAX_IMAGE_PIXELS`` × 2 (a possible decompression bomb); the
            message starts with ``cannot read image <path>``.

    A file between ``MAX_IMAGE_PIXELS`` and twice that gives PIL's
    ``DecompressionBombWarning``, re-issued with the file's path.
    """
    from PIL import Image, UnidentifiedImageError

    name = os.fspath(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(name) as img:
                img.load()
                image = to_8bit(img)
                image = image.convert(mode) if mode is not None else image.copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {name}") from None
    except Image.DecompressionBombError as exc:
        raise OSError(
            f"cannot read image {name}: {exc} (raise PIL.Image.MAX_IMAGE_PIXELS to allow it)"
        ) from exc
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise OSError(f"cannot read image {name}: {exc}") from exc
    for warning in caught:
        if issubclass(warning.category, Image.DecompressionBombWarning):
            warnings.warn(f"{name}: {warning.message}", Image.DecompressionBombWarning, stacklevel=2)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return image

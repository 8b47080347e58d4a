"""The one image -> tensor path for training, evaluation and export parity, step for step EasyOCR's Reader.

Models trained on other preprocessing read well in training and badly in ``easyocr.Reader``; so this module
repeats exactly what Reader does to a crop (``reformat_input`` -> ``get_image_list`` -> ``AlignCollate`` ->
``NormalizePAD``), and tests/test_preprocess.py proves the tensors are equal to EasyOCR's own, bit for bit:

1. grayscale as Reader makes it (``cv2.imread(path, IMREAD_GRAYSCALE)``, or BGR/RGBA arrays via cv2.cvtColor);
2. cv2.resize to height imgH keeping the ratio, width ``int(imgH * w / h)`` (Reader passes PIL's LANCZOS
   constant, 1, which cv2 reads as INTER_LINEAR); a tall crop becomes imgH wide instead;
3. PIL BICUBIC resize to ``ceil(imgH * w' / h')`` x imgH (a no-op for wide crops), ToTensor, (x - 0.5) / 0.5;
4. right-pad by repeating the last column, to ``ceil(max(w/h, h/w, 1)) * imgH`` for a crop read on its own.

Augmentations act on the image before ``preprocess``, never instead of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from ocrtune.errors import UserError

IMG_H = 64

ImageLike = Any  # str | Path | bytes | np.ndarray | PIL.Image.Image


def to_gray(image: ImageLike) -> np.ndarray:
    """The uint8 (H, W) gray image Reader recognises, from a path, file bytes, an array or a PIL image.

    Paths and bytes are decoded with ``IMREAD_GRAYSCALE`` (what Reader does with a path; bytes are taken as the
    content of such a file). 3-channel arrays are BGR and 4-channel arrays RGBA, as in Reader's
    ``reformat_input``; a PIL image is converted as Reader converts a PIL JPEG (RGB -> BGR -> gray).
    """
    if isinstance(image, str | Path):
        gray = cv2.imread(str(image), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise UserError(f"{image}: not a readable image")
        return gray
    if isinstance(image, bytes | bytearray | memoryview):
        gray = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise UserError("image bytes do not decode as an image")
        return gray
    if not isinstance(image, np.ndarray):
        if not isinstance(image, Image.Image):
            raise UserError(f"cannot read an image from a {type(image).__name__}")
        if image.mode == "L":
            return np.asarray(image, dtype=np.uint8)
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGB")
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[2] == 3:  # Reader on a PIL JPEG: RGB -> BGR -> gray
            return cv2.cvtColor(cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), cv2.COLOR_BGR2GRAY)
        image = arr
    if image.dtype != np.uint8:
        raise UserError(f"image array must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return np.squeeze(image, axis=2)
    if image.ndim == 3 and image.shape[2] == 3:  # BGR, as cv2 reads it
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:  # RGBA
        bgr = cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2BGR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    raise UserError(f"image array of shape {image.shape} is neither gray, BGR nor RGBA")


def aspect(width: int, height: int) -> float:
    """Reader's ``calculate_ratio``: w/h for wide crops, h/w for tall ones (always >= 1)."""
    ratio = width / height
    return 1.0 / ratio if ratio < 1.0 else ratio


def reader_width(width: int, height: int, imgH: int = IMG_H) -> int:
    """Width Reader pads a crop of this original size to when it reads the crop on its own."""
    return math.ceil(max(aspect(width, height), 1)) * imgH


def width_bucket(width: int, imgH: int = IMG_H) -> int:
    """Round a width up to a multiple of imgH: the padded widths Reader uses, hence natural batch buckets."""
    return max(1, math.ceil(width / imgH)) * imgH


def resize_to_height(gray: np.ndarray, imgH: int = IMG_H) -> np.ndarray:
    """Reader's ``compute_ratio_and_resize``: the cv2 keep-ratio step (tall crops become imgH wide)."""
    height, width = gray.shape[:2]
    if height == 0 or width == 0:
        raise UserError(f"empty image ({width}x{height})")
    ratio = width / height
    if ratio < 1.0:
        size = (imgH, int(imgH * aspect(width, height)))
    else:
        size = (int(imgH * ratio), imgH)
    return cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)  # Reader passes LANCZOS (=1) = INTER_LINEAR


def adjust_contrast_grey(gray: np.ndarray, target: float = 0.4) -> np.ndarray:
    """Reader's low-confidence retry: stretch the contrast of a flat crop (same arithmetic as EasyOCR)."""
    high = np.percentile(gray, 90)
    low = np.percentile(gray, 10)
    contrast = (high - low) / np.maximum(10, high + low)
    if contrast >= target:
        return gray
    ratio = 200.0 / np.maximum(10, high - low)
    out = (gray.astype(int) - low + 25) * ratio
    return np.clip(out, 0, 255).astype(np.uint8)


def _normalize(resized: np.ndarray, imgH: int, adjust_contrast: float) -> np.ndarray:
    if adjust_contrast > 0:
        resized = adjust_contrast_grey(resized, target=adjust_contrast)
    h, w = resized.shape
    new_w = math.ceil(imgH * (w / float(h)))
    if (new_w, imgH) != (w, h):
        resized = np.asarray(Image.fromarray(resized, "L").resize((new_w, imgH), Image.BICUBIC))
    out = resized.astype(np.float32) / np.float32(255.0)  # ToTensor
    out -= np.float32(0.5)
    out /= np.float32(0.5)
    return out


def preprocess(image: ImageLike, imgH: int = IMG_H, adjust_contrast: float = 0.0) -> np.ndarray:
    """float32 (imgH, W) in [-1, 1]: exactly the unpadded columns Reader feeds the model for this crop."""
    return _normalize(resize_to_height(to_gray(image), imgH), imgH, adjust_contrast)


def preprocess_with_width(
    image: ImageLike, imgH: int = IMG_H, adjust_contrast: float = 0.0
) -> tuple[np.ndarray, int]:
    """``preprocess`` plus the width Reader pads this crop to: bucket by it and a batch equals Reader's input."""
    gray = to_gray(image)
    h, w = gray.shape[:2]
    if h == 0 or w == 0:
        raise UserError(f"empty image ({w}x{h})")
    return _normalize(resize_to_height(gray, imgH), imgH, adjust_contrast), reader_width(w, h, imgH)


def pad_batch(arrays: Sequence[np.ndarray], width: int | None = None) -> torch.Tensor:
    """(B, 1, imgH, Wmax) float32, each image right-padded by repeating its last column (NormalizePAD).

    Wmax is the widest image, or ``width`` if that is wider (Reader pads to ``reader_width``).
    """
    if not arrays:
        raise ValueError("pad_batch needs at least one image")
    imgH = arrays[0].shape[0]
    wmax = max(max(a.shape[1] for a in arrays), width or 0)
    out = np.empty((len(arrays), 1, imgH, wmax), dtype=np.float32)
    for i, a in enumerate(arrays):
        w = a.shape[1]
        out[i, 0, :, :w] = a
        if w < wmax:
            out[i, 0, :, w:] = a[:, w - 1 : w]
    return torch.from_numpy(out)


def reader_tensor(image: ImageLike, imgH: int = IMG_H, adjust_contrast: float = 0.0) -> torch.Tensor:
    """(1, 1, imgH, reader_width): the tensor ``Reader.recognize`` gives the model for this whole image."""
    arr, width = preprocess_with_width(image, imgH, adjust_contrast)
    return pad_batch([arr], width)

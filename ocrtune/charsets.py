"""Character sets, taken from EasyOCR's own config so ours can never drift from what Reader decodes.

``korean_g2`` is 1,008 characters (95 ASCII + 913 Hangul syllables): num_class 1,009 with the CTC blank
at index 0. A custom charset is a UTF-8 file: one character a line, or the whole set on one line.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

from ocrtune.errors import UserError

BUILTIN = ("korean_g2", "english_g2")
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3  # the 11,172 precomposed syllables


@functools.cache
def _easyocr_config() -> ModuleType:
    """easyocr/config.py loaded on its own: the package's __init__ pulls in torch and OpenCV."""
    spec = importlib.util.find_spec("easyocr")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the easyocr package is not installed (pip install easyocr)")
    path = Path(next(iter(spec.submodule_search_locations))) / "config.py"
    cfg_spec = importlib.util.spec_from_file_location("_ocrtune_easyocr_config", path)
    module = importlib.util.module_from_spec(cfg_spec)
    cfg_spec.loader.exec_module(module)
    return module


def model_info(name: str) -> dict[str, Any]:
    """EasyOCR's entry for a generation-2 recognizer: filename, url, md5sum, characters."""
    models = _easyocr_config().recognition_models["gen2"]
    if name not in models:
        raise UserError(f"unknown EasyOCR gen2 model '{name}' (known: {', '.join(sorted(models))})")
    return dict(models[name])


def load_charset(spec: str | Path) -> str:
    """Characters of a built-in charset (``korean_g2``, ``english_g2``) or of a charset file."""
    if str(spec) in BUILTIN:
        return model_info(str(spec))["characters"]
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"unknown charset '{spec}': not one of {', '.join(BUILTIN)} nor a file")
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: charset file is not UTF-8 (byte {exc.start})") from None
    lines = text.splitlines()
    if len(lines) > 1 and all(len(ln) == 1 for ln in lines if ln != ""):
        chars = [ln for ln in lines if ln != ""]
    else:
        chars = list(text.rstrip("\n"))
    seen, out = set(), []
    for ch in chars:
        if ch not in seen:
            seen.add(ch)
            out.append(ch)
    if not out:
        raise UserError(f"{path}: charset file is empty")
    return "".join(out)


def is_hangul(ch: str) -> bool:
    return HANGUL_FIRST <= ord(ch) <= HANGUL_LAST


def all_syllables() -> str:
    return "".join(chr(c) for c in range(HANGUL_FIRST, HANGUL_LAST + 1))


def describe(chars: str) -> dict[str, int]:
    """Counts a person checks first: total, Hangul syllables, ASCII, other."""
    hangul = sum(is_hangul(c) for c in chars)
    ascii_ = sum(ord(c) < 128 for c in chars)
    return {"total": len(chars), "hangul": hangul, "ascii": ascii_, "other": len(chars) - hangul - ascii_}

"""Real EasyOCR english_g2 weights (offline package) exported, a degraded copy, and a word benchmark set."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import torch
from easyocr_en_models import model_dir
from PIL import Image, ImageDraw, ImageFont

from ocrtune.charsets import load_charset
from ocrtune.release.export import export_model

WORDS = [
    "Hello",
    "World",
    "kernel",
    "Seoul",
    "garden",
    "42 apples",
    "river",
    "Python",
    "moon",
    "table",
    "orange",
    "silver",
    "Korea",
    "window",
    "2026",
    "music",
]
FONT = Path(matplotlib.__file__).parent / "mpl-data/fonts/ttf/DejaVuSans.ttf"
EN_G2 = Path(model_dir()) / "english_g2.pth"


def make_benchmark(dest: Path, words=WORDS) -> Path:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(str(FONT), 40)
    lines = []
    for i, w in enumerate(words):
        left, top, right, bottom = font.getbbox(w)
        img = Image.new("L", (right - left + 16, 64), 255)
        ImageDraw.Draw(img).text((8 - left, (64 - (bottom - top)) // 2 - top), w, font=font, fill=0)
        rel = f"images/image_{i:06d}.png"
        img.save(dest / rel)
        lines.append(f"{rel}\t{w}")
    (dest / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def export_english(dest: Path, noise: float = 0.0, seed: int = 0) -> Path:
    """english_g2 as an export; with ``noise`` its output layer is perturbed into a worse model."""
    src = EN_G2
    if noise:
        state = torch.load(EN_G2, map_location="cpu", weights_only=True)
        g = torch.Generator().manual_seed(seed)
        w = state["module.Prediction.weight"]
        state["module.Prediction.weight"] = w + noise * w.std() * torch.randn(w.shape, generator=g)
        src = dest.parent / f"{dest.name}-weights.pth"
        torch.save(state, src)
    export_model(src, dest, name="custom", charset=load_charset("english_g2"), lang_list=["en"])
    return dest


def reader_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()}

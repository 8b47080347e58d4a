"""Training end to end on tiny real LMDBs: one process, torchrun with 2 gloo ranks, exact resume, SIGTERM,
non-finite losses, bad input, MLflow on the real local stack; plus the sampler and the launch environment.

Images are words drawn with a real handwriting font (NanumPen) and written with ocrtune's own LMDB writer;
the model is the real None-VGG-BiLSTM-CTC with a small head, so a step takes about a second on 2 cores.
"""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrtune.config import TrainConfig
from ocrtune.data.lmdb import write_lmdb
from support.cli import REPO

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")


FONTS = [FONT_DIR / "NanumPen.ttf", FONT_DIR / "NanumBrush.ttf"]


WORDS = ["ab", "cab", "bad", "dab", "ace", "bed", "fad", "deaf", "face", "cafe", "bead", "fee"]


CHARSET = "abcdef"


def _render(word: str, font_path: Path, size: int = 30) -> bytes:
    font = ImageFont.truetype(str(font_path), size)
    left, top, right, bottom = font.getbbox(word)
    img = Image.new("L", (right - left + 8, bottom - top + 8), 255)
    ImageDraw.Draw(img).text((4 - left, 4 - top), word, font=font, fill=0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def make_lmdb(root: Path, n: int, seed: int = 0, words=WORDS) -> Path:
    """A gt.txt layout of ``n`` rendered words (+ samples.tsv with the font), written as LMDB by ocrtune."""
    rng = np.random.default_rng(seed)
    layout = root / "layout"
    (layout / "images").mkdir(parents=True)
    gt, samples = [], []
    for i in range(n):
        word, font = words[rng.integers(len(words))], FONTS[rng.integers(len(FONTS))]
        name = f"images/image_{i:06d}.jpg"
        (layout / name).write_bytes(_render(word, font))
        gt.append(f"{name}\t{word}")
        samples.append(f"{name}\t{font.stem}\ttest")
    (layout / "gt.txt").write_text("\n".join(gt) + "\n", "utf-8")
    (layout / "samples.tsv").write_text("\n".join(samples) + "\n", "utf-8")
    write_lmdb(layout, root / "lmdb")
    return root / "lmdb"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("train-data")
    charset = root / "charset.txt"
    charset.write_text(CHARSET, "utf-8")
    return {
        "train": str(make_lmdb(root / "train", 48, seed=1)),
        "val": str(make_lmdb(root / "val", 8, seed=2)),
        "charset": str(charset),
        "root": root,
    }


def tiny_cfg(data: dict, **kw) -> TrainConfig:
    base = dict(
        pretrained="none",
        fallback_pretrained=None,
        charset=data["charset"],
        batch_size=4,
        max_steps=6,
        lr=1e-3,
        warmup_steps=1,
        schedule="cosine",
        val_interval=3,
        checkpoint_interval=3,
        workers=0,
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def config_yaml(path: Path, data: dict, **kw) -> Path:
    import yaml

    cfg = dataclasses.asdict(tiny_cfg(data, **kw))
    path.write_text(yaml.safe_dump({"name": "test", "train": cfg}), "utf-8")
    return path


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PET_", "WORLD_SIZE", "RANK"))}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env

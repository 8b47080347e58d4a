"""Preprocessing benchmark: images/s of ocrtune.preprocess vs EasyOCR's own per-crop path on the same JPEG
bytes (both produce identical tensors), plus pad_batch and greedy decode, side by side in one run.

    .venv/bin/python bench/bench_preprocess.py [--words 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.model.decode import decode_greedy  # noqa: E402
from ocrtune.model.preprocess import pad_batch, preprocess, preprocess_with_width, to_gray  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

FONT = "/usr/share/fonts/truetype/nanum/NanumPen.ttf"


def word_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """Korean words in NanumPen at heights 40-90 px (as rendered datasets and real crops vary), JPEG bytes."""
    rng = random.Random(seed)
    chars = [c for c in load_charset("korean_g2") if ord(c) >= 0xAC00]
    out = []
    for _ in range(n):
        word = "".join(rng.choice(chars) for _ in range(rng.randint(1, 6)))
        font = ImageFont.truetype(FONT, rng.randint(30, 70))
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("RGB", (right - left + 10, bottom - top + 10), (rng.randint(200, 255),) * 3)
        ImageDraw.Draw(img).text((5 - left, 5 - top), word, font=font, fill=(rng.randint(0, 60),) * 3)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def easyocr_path(data: bytes):
    """EasyOCR's own functions for one crop, as Reader.recognize runs them (decode as from a file path)."""
    import cv2
    from easyocr.recognition import AlignCollate
    from easyocr.utils import get_image_list

    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    image_list, max_width = get_image_list([[0, grey.shape[1], 0, grey.shape[0]]], [], grey, model_height=64)
    collate = AlignCollate(imgH=64, imgW=int(max_width), keep_ratio_with_pad=True)
    return collate([Image.fromarray(crop, "L") for _, crop in image_list])


def rate(fn, items, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = max(best, len(items) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--words", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = word_jpegs(args.words)
    greys = [to_gray(d) for d in data]
    widths = [g.shape[1] * 64 / g.shape[0] for g in greys]
    print(f"machine: {machine('cv2', 'PIL')}")
    print(
        f"{len(data)} JPEG word crops, mean width at height 64: {np.mean(widths):.0f} px; best of {args.rounds}"
    )

    # identical output first, then speed
    for d in data[:50]:
        arr, width = preprocess_with_width(d)
        assert torch.equal(pad_batch([arr], width), easyocr_path(d))
    r_easy = rate(easyocr_path, data, args.rounds)
    r_ours = rate(lambda d: preprocess_with_width(d), data, args.rounds)
    r_gray = rate(preprocess, greys, args.rounds)
    print(f"EasyOCR get_image_list+AlignCollate (decode incl.): {r_easy:8,.0f} img/s")
    print(
        f"ocrtune preprocess_with_width      (decode incl.): {r_ours:8,.0f} img/s  ({r_ours / r_easy:.1f}x)"
    )
    print(f"ocrtune preprocess from a gray array (no decode)  : {r_gray:8,.0f} img/s")

    arrays = [preprocess(g) for g in greys]
    batches = [arrays[i : i + 64] for i in range(0, len(arrays), 64)]
    r_pad = rate(pad_batch, batches, args.rounds) * 64
    print(f"pad_batch, batches of 64                          : {r_pad:8,.0f} img/s")

    charset = load_charset("korean_g2")
    logits = torch.randn(64, 40, len(charset) + 1) * 4
    r_dec = rate(lambda x: decode_greedy(x, charset), [logits] * 10, args.rounds) * 64
    print(f"decode_greedy, 64 x 40 steps x 1009 classes       : {r_dec:8,.0f} rows/s")


if __name__ == "__main__":
    main()

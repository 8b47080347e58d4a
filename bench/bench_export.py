"""Export benchmark: Reader.recognize latency of an ocrtune export vs EasyOCR's stock english_g2 on the same
crops (same architecture and weights: should be equal within noise), and ocrtune's batched inference
throughput vs Reader's one-crop-at-a-time, side by side in one run (rounds interleaved).

    .venv/bin/python bench/bench_export.py [--crops 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine  # noqa: E402

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.model.decode import read_crops  # noqa: E402
from ocrtune.model.network import Model  # noqa: E402
from ocrtune.model.pretrained import load_recognizer_state  # noqa: E402
from ocrtune.release.easyocr_reader import open_reader  # noqa: E402
from ocrtune.release.export import export_model  # noqa: E402


def crops(n: int) -> list[np.ndarray]:
    import wordfreq

    from ocrtune.data.fonts import load_fonts

    fonts = [f.path for f in load_fonts()]
    words = [w for w in wordfreq.top_n_list("en", 5000) if w.isascii() and w.isalpha()]
    rng = random.Random(0)
    out = []
    for _ in range(n):
        word = rng.choice(words)
        font = ImageFont.truetype(rng.choice(fonts), rng.randint(40, 56))
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right - left + 12, bottom - top + 12), 255)
        ImageDraw.Draw(img).text((6 - left, 6 - top), word, font=font, fill=0)
        out.append(np.asarray(img))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--crops", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"machine: {machine('easyocr', 'cv2')}")
    from easyocr_en_models import model_dir

    images = crops(args.crops)
    with tempfile.TemporaryDirectory() as tmp:
        export = export_model(
            Path(model_dir()) / "english_g2.pth",
            Path(tmp) / "custom",
            charset=load_charset("english_g2"),
            lang_list=["en"],
        )["dir"]
        import easyocr

        ours = open_reader(export)
        stock = easyocr.Reader(
            ["en"],
            gpu=False,
            model_storage_directory=model_dir(),
            download_enabled=False,
            detector=False,
            verbose=False,
        )
        state, _ = load_recognizer_state(Path(export) / "custom.pth")
        net = Model(num_class=97)
        net.load_state_dict(state)
        charset = load_charset("english_g2")

        def reader_pass(reader) -> tuple[float, list[str]]:
            t = time.perf_counter()
            texts = [(reader.recognize(img) or [(0, "", 0)])[0][1] for img in images]
            return time.perf_counter() - t, texts

        qnet = Model(num_class=97)
        qnet.load_state_dict(state)
        torch.quantization.quantize_dynamic(qnet, dtype=torch.qint8, inplace=True)

        def batched_pass(model) -> tuple[float, list[str]]:
            t = time.perf_counter()
            texts = [text for text, _ in read_crops(model, images, charset, batch_size=args.batch)]
            return time.perf_counter() - t, texts

        times: dict[str, list[float]] = {"export": [], "english_g2": [], "batched": [], "batched_int8": []}
        for _ in range(args.rounds):
            for name, fn in (
                ("export", lambda: reader_pass(ours)),
                ("english_g2", lambda: reader_pass(stock)),
                ("batched", lambda: batched_pass(net)),
                ("batched_int8", lambda: batched_pass(qnet)),
            ):
                seconds, texts = fn()
                times[name].append(seconds)
                if name == "export":
                    export_texts = texts
                elif name == "english_g2":
                    stock_texts = texts
    n = len(images)
    med = {k: statistics.median(v) for k, v in times.items()}
    same = sum(a == b for a, b in zip(export_texts, stock_texts, strict=True))
    print(f"{n} crops, {args.rounds} interleaved rounds, 1 thread, median per round:")
    print(f"  Reader.recognize, ocrtune export : {1000 * med['export'] / n:7.2f} ms/crop")
    print(
        f"  Reader.recognize, stock english_g2: {1000 * med['english_g2'] / n:7.2f} ms/crop"
        f"   (export/stock time ratio {med['export'] / med['english_g2']:.3f}; same text {same}/{n})"
    )
    print(
        f"  ocrtune batched read_crops (b={args.batch}, float): {n / med['batched']:7.1f} crops/s vs Reader "
        f"{n / med['export']:.1f} crops/s -> {med['export'] / med['batched']:.2f}x"
    )
    print(
        f"  ocrtune batched read_crops (b={args.batch}, int8 as Reader on CPU): {n / med['batched_int8']:7.1f} "
        f"crops/s -> {med['export'] / med['batched_int8']:.2f}x Reader"
    )


if __name__ == "__main__":
    main()

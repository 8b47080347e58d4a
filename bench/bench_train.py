"""Training benchmark: data-loader samples/s per worker (LMDB read + decode + EasyOCR preprocessing + padding)
and training samples/s with 1 and 2 DDP ranks (torchrun, gloo) on this CPU, side by side in one run.

    .venv/bin/python bench/bench_train.py [--samples 600] [--steps 12] [--batch 16] [--loader-samples 4000]

The data are Korean words from wordfreq (only those korean_g2 can spell), drawn with Korean handwriting
fonts at height 64 and written with ocrtune's LMDB writer. The model is english_g2 with head surgery to
korean_g2 (1,009 classes), as the tiny profile starts offline.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.lmdb_format import LmdbReader, write_lmdb  # noqa: E402
from ocrtune.loader import BucketBatchSampler, Collate, LmdbDataset, LmdbSource, make_loader  # noqa: E402
from ocrtune.preprocess import preprocess  # noqa: E402

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
FONTS = ["NanumPen.ttf", "NanumBrush.ttf", "NanumBarunpenR.ttf"]


def machine() -> str:
    import torch

    from ocrtune.tracking import system_info

    info = system_info()
    return (
        f"{info['cpu']}, {info['cores']} cores, python {platform.python_version()}, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def make_data(root: Path, n: int) -> tuple[Path, float]:
    """n rendered Korean words as an LMDB; returns its path and the mean width at height 64."""
    import wordfreq

    chars = set(load_charset("korean_g2"))
    words = [w for w in wordfreq.top_n_list("ko", 5000) if len(w) >= 2 and all(c in chars for c in w)]
    rng = np.random.default_rng(0)
    layout = root / "layout"
    (layout / "images").mkdir(parents=True)
    gt, widths = [], []
    fonts = [ImageFont.truetype(str(FONT_DIR / f), 48) for f in FONTS if (FONT_DIR / f).is_file()]
    for i in range(n):
        word, font = words[rng.integers(len(words))], fonts[rng.integers(len(fonts))]
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right - left + 10, bottom - top + 10), 255)
        ImageDraw.Draw(img).text((5 - left, 5 - top), word, font=font, fill=0)
        widths.append(img.width * 64 / img.height)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        (layout / f"images/image_{i:06d}.jpg").write_bytes(buf.getvalue())
        gt.append(f"images/image_{i:06d}.jpg\t{word}")
    (layout / "gt.txt").write_text("\n".join(gt) + "\n", "utf-8")
    write_lmdb(layout, root / "lmdb")
    return root / "lmdb", float(np.mean(widths))


def bench_loader(lmdb_path: Path, charset: str, samples: int, batch: int) -> dict[str, float]:
    """samples/s of: a plain loop (read + preprocess), our pipeline in-process, and with 1 worker process."""

    reader = LmdbReader(lmdb_path)
    n = len(reader)
    t = time.perf_counter()
    for k in range(samples):
        data, _ = reader.get(k % n)
        preprocess(data)
    plain = samples / (time.perf_counter() - t)

    source = LmdbSource(lmdb_path, charset, 34)
    out = {"plain loop": plain}
    for workers in (0, 1):
        sampler = BucketBatchSampler([source.widths], batch, seed=1)
        loader = make_loader(LmdbDataset([source]), sampler, charset, workers=workers)
        it = iter(loader)
        next(it)  # worker start-up not timed
        t, seen = time.perf_counter(), 0
        while seen < samples:
            seen += len(next(it)["labels"])
        rate = seen / (time.perf_counter() - t)
        out["ocrtune loader, in-process" if workers == 0 else "ocrtune loader, 1 worker process"] = rate
        del it, loader
    # collate alone (padding + label encoding) on already preprocessed items
    ds, col = LmdbDataset([source]), Collate(charset)
    items = [ds[(0, k % len(source), 0)] for k in range(batch * 8)]
    t = time.perf_counter()
    for k in range(8):
        col(items[k * batch : (k + 1) * batch])
    out["collate only"] = batch * 8 / (time.perf_counter() - t)
    return out


def bench_ranks(lmdb_path: Path, nproc: int, steps: int, batch: int, work: Path) -> float:
    cfg = work / "bench.yaml"
    cfg.write_text(
        "name: bench\ntrain:\n  pretrained: english_g2\n  charset: korean_g2\n"
        f"  batch_size: {batch}\n  max_steps: {steps}\n  val_interval: 100000\n  checkpoint_interval: 100000\n"
        "  warmup_steps: 1\n  workers: 1\n",
        "utf-8",
    )
    out = work / f"ranks{nproc}"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += [
        "-m",
        "ocrtune",
        "train",
        "--config",
        str(cfg),
        "--train",
        str(lmdb_path),
        "--val",
        str(lmdb_path),
    ]
    cmd += ["--out", str(out), "--no-mlflow", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WORLD_SIZE", "RANK"))}
    env["PYTHONPATH"] = str(REPO)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{nproc} rank(s) failed:\n{r.stderr[-3000:]}")
    m = re.search(r"([\d.]+) samples/s", r.stdout)
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=600, help="words rendered into the LMDB")
    ap.add_argument("--steps", type=int, default=12, help="training steps per run (2 first steps not timed)")
    ap.add_argument("--batch", type=int, default=16, help="batch size per rank")
    ap.add_argument("--loader-samples", type=int, default=4000)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    charset = load_charset("korean_g2")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        lmdb_path, mean_w = make_data(work / "data", args.samples)
        print(
            f"data: {args.samples} Korean words, 3 handwriting fonts, mean width {mean_w:.0f} px at height 64"
        )
        print("\ndata loader (LMDB read + JPEG decode + EasyOCR preprocessing + padding), samples/s:")
        for name, rate in bench_loader(lmdb_path, charset, args.loader_samples, 32).items():
            print(f"  {name:34s} {rate:9,.0f}")
        print(
            f"\ntraining, batch {args.batch} per rank, {args.steps} steps, korean_g2 head (samples/s, all ranks):"
        )
        one = bench_ranks(lmdb_path, 1, args.steps, args.batch, work)
        two = bench_ranks(lmdb_path, 2, args.steps, args.batch, work)
        print(f"  1 rank  (2 threads)   {one:8.2f}")
        print(f"  2 ranks (1 thread each) {two:6.2f}   ratio {two / one:.2f}x")
        print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()

"""Renderer benchmark: ours vs the real trdg 1.8.0, same words, font, height and skew, JPEG files to disk.

Measured side by side in one run, interleaved (ours, trdg, ours, trdg...) so that load from other
processes hits both alike; each figure is the best of ROUNDS. Also MB per 1,000 images (JPEG vs PNG) and
the end-to-end time of `ocrtune data generate` for 10,000 images, extrapolated to 100,000.

    .venv/bin/python bench/bench_render.py [--n 1000] [--rounds 2] [--e2e 10000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocrtune.config import DataConfig
from ocrtune.data import generate as gen
from ocrtune.data.fonts import load_fonts
from ocrtune.data.render import RenderOptions
from ocrtune.data.trdg_backend import ensure_trdg, run_trdg
from ocrtune.data.words import wordfreq_words

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

HEIGHT, SKEW = 64, 15.0
FONT = "NanumPen"


def ours(
    words: list[str], font: str, workers: int, options: RenderOptions, fmt: str = "jpg"
) -> tuple[float, int]:
    """images/s through the same worker code `ocrtune data generate` uses; returns (rate, bytes on disk)."""
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as d:
        (Path(d) / "train" / "images").mkdir(parents=True)
        items = [("train", i, w, "f") for i, w in enumerate(words)]
        t0 = time.perf_counter()
        gen.render_items(items, Path(d), options, 0, fmt, {"f": font}, workers)
        rate = len(words) / (time.perf_counter() - t0)
        size = sum(p.stat().st_size for p in (Path(d) / "train" / "images").iterdir())
    return rate, size


def trdg(words: list[str], font: str, workers: int, python: Path) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-trdg-") as d:
        items = [(d, i, w, font, f"bench:{i}") for i, w in enumerate(words)]
        failed, elapsed = run_trdg(items, HEIGHT, SKEW, workers=workers, rename=False, python=python)
        size = sum(p.stat().st_size for p in Path(d).iterdir())
    return (len(words) - len(failed)) / elapsed, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000, help="images per measurement")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--e2e", type=int, default=10000, help="images in the end-to-end run (0: skip)")
    args = ap.parse_args()

    fonts = {f.name: f for f in load_fonts()}
    font = fonts[FONT].path if FONT in fonts else next(iter(fonts.values())).path
    words = [w for w in wordfreq_words(5000) if len(w) >= 2][: args.n]
    python = ensure_trdg()
    trdg_pillow = subprocess.run(
        [str(python), "-c", "import PIL; print(PIL.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    print(machine("PIL") + f"; trdg 1.8.0 with Pillow {trdg_pillow} in its own venv")
    print(
        f"{len(words)} Korean words (wordfreq), font {Path(font).name}, height {HEIGHT}, skew +-{SKEW:g}, JPEG"
    )

    rich = RenderOptions(height=HEIGHT, skew=SKEW, background="mixed", augment=True)
    plain = RenderOptions(height=HEIGHT, skew=SKEW, background="plain", augment=False)
    configs = {
        "ours, full augmentation, mixed backgrounds": lambda w: ours(words, font, w, rich),
        "ours, plain (trdg's settings)": lambda w: ours(words, font, w, plain),
        "trdg 1.8.0 (-k 15 -rk -b 1 -bl 0 -m 0,0,0,0)": lambda w: trdg(words, font, w, python),
    }
    best: dict[tuple[str, int], float] = {}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for workers in (1, 2):
            for name, fn in configs.items():
                rate, size = fn(workers)
                best[name, workers] = max(best.get((name, workers), 0.0), rate)
                sizes[name] = size
    print()
    print(f"| renderer | 1 process img/s | 2 processes img/s | MB per 1,000 JPEG | (best of {args.rounds})")
    print("|---|---:|---:|---:|")
    for name in configs:
        mb = sizes[name] / len(words) * 1000 / 1e6
        print(f"| {name} | {best[name, 1]:.0f} | {best[name, 2]:.0f} | {mb:.2f} |")
    t = "trdg 1.8.0 (-k 15 -rk -b 1 -bl 0 -m 0,0,0,0)"
    r = "ours, full augmentation, mixed backgrounds"
    print(
        f"\nours (full augmentation) / trdg: {best[r, 1] / best[t, 1]:.1f}x with 1 process, "
        f"{best[r, 2] / best[t, 2]:.1f}x with 2 processes"
    )

    _, jpg = ours(words, font, 2, rich, "jpg")
    _, png = ours(words, font, 2, rich, "png")
    n = len(words)
    print(
        f"MB per 1,000 images (ours, full augmentation): JPEG q{rich.jpeg_quality} {jpg / n * 1000 / 1e6:.2f}, "
        f"PNG {png / n * 1000 / 1e6:.2f} ({png / jpg:.1f}x)"
    )

    if args.e2e:
        with tempfile.TemporaryDirectory(prefix="bench-e2e-") as d:
            cfg = DataConfig(train_count=args.e2e, val_count=0, test_count=0, coverage_min=3, workers=2)
            t0 = time.perf_counter()
            gen.generate(cfg, Path(d) / "out")
            dt = time.perf_counter() - t0
            du = sum(p.stat().st_size for p in (Path(d) / "out").rglob("*") if p.is_file())
            shutil.rmtree(Path(d) / "out")
        print(
            f"end to end `data generate` (all {len(fonts)} fonts, coverage K=3, 2 workers, card): {args.e2e} images "
            f"in {dt:.1f} s ({args.e2e / dt:.0f} img/s, {du / 1e6:.0f} MB); 100,000 images extrapolated "
            f"linearly: {dt * 100000 / args.e2e / 60:.1f} min"
        )


if __name__ == "__main__":
    main()

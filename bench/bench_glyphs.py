"""Glyph coverage benchmark: ways to tell whether a font draws a character, side by side in one run.

For all 11,172 Hangul syllables of a few real fonts: characters/s and how many answers differ from ours
(cmap AND ink of ``font.getmask``), for a cmap-only check, a metrics bbox (``font.getbbox``) and a full
ImageDraw render with a pixel count; then a cold ``fonts report``-style pass over every fetched font.

    .venv/bin/python bench/bench_glyphs.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocrtune.charsets import all_syllables, load_charset  # noqa: E402
from ocrtune.data.font_fetch import fetch_fonts  # noqa: E402
from ocrtune.data.glyphs import RENDER_PX, coverage, coverage_table, drawn_chars, mapped_codepoints  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402


def cmap_only(path, chars, mapped):
    return {c for c in chars if ord(c) in mapped}


def metrics_bbox(path, chars, mapped):
    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    out = set()
    for c in chars:
        if ord(c) in mapped:
            x0, y0, x1, y1 = font.getbbox(c)
            if x1 > x0 and y1 > y0:
                out.add(c)
    return out


def mask_ink(path, chars, mapped):  # what ocrtune.glyphs does
    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    return {c for c in chars if ord(c) in mapped and font.getmask(c).getbbox() is not None}


def imagedraw_count(path, chars, mapped):
    font = ImageFont.truetype(str(path), RENDER_PX)
    out = set()
    for c in chars:
        if ord(c) not in mapped:
            continue
        img = Image.new("L", (2 * RENDER_PX, 2 * RENDER_PX), 255)
        ImageDraw.Draw(img).text((RENDER_PX // 2, RENDER_PX // 2), c, font=font, fill=0)
        if int((np.asarray(img) < 255).sum()) > 0:
            out.add(c)
    return out


def ink_without_cmap(path, chars, mapped):
    font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    return {c for c in chars if font.getmask(c).getbbox() is not None}


METHODS = [
    ("cmap only", cmap_only),
    ("cmap + metrics bbox", metrics_bbox),
    ("cmap + getmask ink (ours)", mask_ink),
    ("cmap + ImageDraw pixel count", imagedraw_count),
    ("getmask ink, no cmap", ink_without_cmap),
]


def main() -> None:
    print(f"machine: {machine('PIL')}")
    fonts = {f.name: f for f in fetch_fonts()}
    chosen = [(n, fonts[n].path) for n in ("NanumPen", "Gaegu", "EastSeaDokdo") if n in fonts]
    square = Path("/usr/share/fonts/truetype/nanum/NanumSquareL.ttf")
    if square.is_file():
        chosen.append(("NanumSquareL (empty glyphs)", str(square)))
    chosen.append(
        ("DejaVuSans (.notdef box)", str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"))
    )
    syllables = all_syllables()
    print(
        f"\nper font, all {len(syllables):,} syllables at {RENDER_PX}px: chars/s and answers differing from ours"
    )
    print(f"{'font':30s} " + "  ".join(f"{m:>30s}" for m, _ in METHODS))
    totals = {m: 0.0 for m, _ in METHODS}
    for name, path in chosen:
        mapped = mapped_codepoints(path)
        ours = mask_ink(path, syllables, mapped)
        cells = []
        for m, fn in METHODS:
            t = time.perf_counter()
            got = fn(path, syllables, mapped)
            dt = time.perf_counter() - t
            totals[m] += dt
            cells.append(f"{len(syllables) / dt:>10,.0f}/s {len(got):>6,} drawn {len(got ^ ours):>5,} diff")
        print(f"{name:30s} " + "  ".join(f"{c:>30s}" for c in cells))
    base = totals["cmap + getmask ink (ours)"]
    print("time relative to ours: " + ", ".join(f"{m} {t / base:.2f}x" for m, t in totals.items()))

    k = load_charset("korean_g2")
    fl = list(fonts.values())
    with tempfile.TemporaryDirectory() as serial_cache, tempfile.TemporaryDirectory() as pool_cache:
        t = time.perf_counter()
        for f in fl:
            coverage(f, k, "korean_g2", cache_dir=serial_cache)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        coverage_table(fl, k, "korean_g2", cache_dir=pool_cache, workers=2)
        cold_pool = time.perf_counter() - t
        t = time.perf_counter()
        coverage_table(fl, k, "korean_g2", cache_dir=pool_cache)
        warm = time.perf_counter() - t
        t = time.perf_counter()
        for f in fl:
            drawn_chars(f, k, cache_dir=pool_cache)
        warm_charset = time.perf_counter() - t
    print(
        f"\nreport rows for {len(fl)} fonts (syllables + korean_g2 + Latin): cold serial {cold:.2f}s, "
        f"cold 2 processes {cold_pool:.2f}s ({cold / cold_pool:.2f}x), cached {warm:.2f}s; "
        f"drawn_chars(korean_g2) of all fonts, cached: {warm_charset * 1000:.0f} ms"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ocrtune", "fonts", "fetch"], check=True, capture_output=True)
    print(f"`ocrtune fonts fetch` when cached (whole process): {time.perf_counter() - t:.2f}s")


if __name__ == "__main__":
    main()

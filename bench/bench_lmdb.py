"""LMDB benchmark: write images/s (with and without decoding each image), MB per 1,000 images JPEG vs PNG,
and LmdbReader random-access reads/s, measured side by side in one run on Korean handwriting word images.

    .venv/bin/python bench/bench_lmdb.py [--words 600] [--repeat 10]
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ocrtune.charsets import load_charset  # noqa: E402
from ocrtune.data.lmdb import LmdbReader, write_lmdb  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402


def korean_font() -> Path:
    try:
        from ocrtune.data.fonts import load_fonts

        fonts = {f.name: f.path for f in load_fonts()}
        for name in ("NanumPen", "Gaegu", "NanumBrush"):
            if name in fonts:
                return Path(fonts[name])
        return Path(next(iter(fonts.values())))
    except Exception as exc:
        raise SystemExit(f"no Korean font: run `ocrtune fonts fetch` first ({exc})") from None


def words(n: int) -> list[str]:
    import wordfreq

    charset = set(load_charset("korean_g2"))
    out = [w for w in wordfreq.top_n_list("ko", 5 * n) if len(w) >= 2 and set(w) <= charset]
    return out[:n]


def render(word: str, font: ImageFont.FreeTypeFont, height: int = 64) -> Image.Image:
    left, top, right, bottom = font.getbbox(word)
    im = Image.new("L", (right - left + 8, bottom - top + 8), 255)
    ImageDraw.Draw(im).text((4 - left, 4 - top), word, font=font, fill=0)
    return im.resize((max(1, round(im.width * height / im.height)), height), Image.BICUBIC)


def make_layout(root: Path, images: list[tuple[str, Image.Image]], fmt: str, repeat: int) -> int:
    """Write each image once; gt.txt lists every image `repeat` times (the LMDB stores a copy each)."""
    (root / "images").mkdir(parents=True)
    ext = ".jpg" if fmt == "JPEG" else ".png"
    lines = []
    for i, (label, im) in enumerate(images):
        rel = f"images/image_{i:06d}{ext}"
        im.save(root / rel, format=fmt)
        lines.append(f"{rel}\t{label}\n")
    (root / "gt.txt").write_text("".join(lines * repeat), encoding="utf-8")
    return len(lines) * repeat


def interleaved_write(src: Path, dst: Path) -> None:
    """The usual create_lmdb_dataset pattern, for comparison: image and label put in turn, 1,000 per txn,
    a 1 TB map reserved, no verification."""
    import lmdb

    lines = (src / "gt.txt").read_text(encoding="utf-8").splitlines()
    env = lmdb.open(str(dst), map_size=1 << 40)
    cache = {}
    for i, line in enumerate(lines, 1):
        rel, label = line.split("\t", 1)
        cache[b"image-%09d" % i] = (src / rel).read_bytes()
        cache[b"label-%09d" % i] = label.encode()
        if i % 1000 == 0 or i == len(lines):
            if i == len(lines):
                cache[b"num-samples"] = str(i).encode()
            with env.begin(write=True) as txn:
                for k, v in cache.items():
                    txn.put(k, v)
            cache = {}
    env.close()


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--words", type=int, default=600, help="distinct word images rendered")
    ap.add_argument("--repeat", type=int, default=10, help="times each image is listed in gt.txt")
    ap.add_argument("--reads", type=int, default=20000, help="random reads timed")
    args = ap.parse_args()

    print(f"machine: {machine('lmdb', 'PIL')}")
    font_path = korean_font()
    font = ImageFont.truetype(str(font_path), 72)
    ws = words(args.words)
    images = [(w, render(w, font)) for w in ws]
    print(
        f"images: {len(images)} Korean words rendered with {font_path.name} at height 64, mean width "
        f"{sum(im.width for _, im in images) / len(images):.0f} px; each listed {args.repeat}x in gt.txt"
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench_lmdb_"))
    try:
        results = {}
        for fmt in ("JPEG", "PNG"):
            src = tmp / f"src_{fmt}"
            n = make_layout(src, images, fmt, args.repeat)
            files_mb = sum(p.stat().st_size for p in (src / "images").iterdir()) / 1e6 / len(images) * 1000
            write_lmdb(src, tmp / f"warm_{fmt}")  # page cache and imports warm for both timed writes
            stats, t_verify = timed(lambda s=src, f=fmt: write_lmdb(s, tmp / f"db_{f}"))
            _, t_plain = timed(lambda s=src, f=fmt: write_lmdb(s, tmp / f"db_{f}_nv", verify=False))
            _, t_inter = timed(lambda s=src, f=fmt: interleaved_write(s, tmp / f"db_{f}_il"))
            assert stats["written"] == n
            db_mb = (tmp / f"db_{fmt}" / "data.mdb").stat().st_size / 1e6 / n * 1000
            il_mb = (tmp / f"db_{fmt}_il" / "data.mdb").stat().st_size / 1e6 / n * 1000
            results[fmt] = (n, t_verify, t_plain, files_mb, db_mb, t_inter, il_mb)

        print("\nLMDB write, one process (ours: MDB_APPEND runs; interleaved: image/label put in turn)")
        print(
            f"{'format':<6} {'samples':>8} {'verified img/s':>15} {'unverified img/s':>17} "
            f"{'verify cost':>12} {'interleaved img/s':>18}"
        )
        for fmt, (n, tv, tp, _, _, ti, _) in results.items():
            print(f"{fmt:<6} {n:>8} {n / tv:>15,.0f} {n / tp:>17,.0f} {tv / tp:>11.2f}x {n / ti:>18,.0f}")

        print("\nsize per 1,000 images (height 64)")
        print(f"{'format':<6} {'image files MB':>15} {'LMDB data.mdb MB':>17} {'interleaved MB':>15}")
        for fmt, (_, _, _, fmb, dmb, _, imb) in results.items():
            print(f"{fmt:<6} {fmb:>15.2f} {dmb:>17.2f} {imb:>15.2f}")
        print(f"PNG / JPEG: {results['PNG'][4] / results['JPEG'][4]:.2f}x the LMDB size")

        print("\nLmdbReader random access (JPEG database)")
        reader = LmdbReader(tmp / "db_JPEG")
        rng = random.Random(0)
        idx = [rng.randrange(len(reader)) for _ in range(args.reads)]
        _, t_get = timed(lambda: [reader.get(i) for i in idx])

        def get_decode():
            for i in idx[: args.reads // 4]:
                data, _ = reader.get(i)
                Image.open(io.BytesIO(data)).convert("L").load()

        _, t_dec = timed(get_decode)
        _, t_lab = timed(reader.labels)
        print(f"get(i) bytes+label: {args.reads / t_get:,.0f} reads/s")
        print(f"get(i) + PIL decode to L: {args.reads // 4 / t_dec:,.0f} reads/s")
        print(f"labels() of {len(reader)}: {t_lab * 1000:.1f} ms")
        reader.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

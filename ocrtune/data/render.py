"""Draw one text line in a handwriting font as a training crop: Pillow only, about 1 ms an image.

Covers what trdg did for the reference (height, random skew, margins, plain white background) and adds the
variation that handwriting needs: backgrounds (noise, paper, quasicrystal), blur, noise, stroke-width
jitter, elastic/wave distortion, character-spacing jitter, ink colour and contrast. Everything random comes
from the ``random.Random`` passed in, so a sample is a pure function of (seed, index): the dataset is the
same whatever the number of worker processes. Text is drawn as an ink mask, the mask is skewed and
distorted, cropped tight around the ink and resized to the final height, then laid on a background.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

BACKGROUNDS = ("plain", "noise", "paper", "quasicrystal", "mixed")
MIXED_WEIGHTS = {"plain": 0.4, "noise": 0.2, "paper": 0.25, "quasicrystal": 0.15}
BANK_WIDTH = 1024
BANK_SIZE = 3
GLYPH_CACHE = 16000  # glyph masks kept per process, all fonts together (~4 kB each)
INKS = [(20, 20, 20), (25, 35, 120), (10, 40, 90), (120, 25, 25), (40, 40, 60)]
PAPERS = [(255, 255, 255), (250, 246, 232), (242, 244, 248), (255, 252, 240)]


class RenderError(Exception):
    """A text that leaves no ink with its font (a glyph the coverage check should have ruled out)."""


@dataclass(frozen=True)
class RenderOptions:
    height: int = 64  # final image height (EasyOCR gen2 imgH)
    skew: float = 15.0  # random rotation within +-skew degrees (trdg -k 15 -rk)
    margins: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right, pixels (trdg -m)
    background: str = "plain"  # plain | noise | paper | quasicrystal | mixed
    augment: bool = True  # the variation below; off = trdg-like plain rendering
    margin_jitter: int = 3  # up to this many extra pixels on each side
    blur_prob: float = 0.3
    blur_max: float = 1.0  # gaussian radius
    noise_prob: float = 0.35
    noise_max: float = 12.0  # gaussian sigma, grey levels
    stroke_prob: float = 0.35  # bolder (stroke) or thinner (erosion) pen
    distort_prob: float = 0.45  # elastic + wave mesh distortion
    distort_strength: float = 0.05  # displacement, fraction of the font size
    spacing_jitter: float = 0.08  # per-gap jitter, fraction of the font size
    baseline_jitter: float = 0.03  # per-character vertical jitter, fraction of the font size
    color_prob: float = 0.3  # coloured ink on tinted paper (else grey ink on grey background)
    contrast_min: float = 0.6  # lowest ink opacity
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.background!r}")
        if self.height < 16:
            raise ValueError("height must be >= 16")


@dataclass
class _FontInfo:
    font: ImageFont.FreeTypeFont
    band: tuple[int, int]  # rows of a Hangul syllable relative to the middle anchor
    glyphs: dict[tuple[str, int], tuple] = field(default_factory=dict)  # (char, stroke) -> _glyph()


def sample_rng(seed: int, index: int) -> random.Random:
    """The per-sample random stream: a function of (seed, index) only."""
    return random.Random(f"ocrtune:{seed}:{index}")


class Renderer:
    """Renders texts; holds font objects and background textures (built once per process from ``seed``)."""

    def __init__(self, options: RenderOptions | None = None, seed: int = 0):
        self.o = options or RenderOptions()
        self.seed = seed
        self._fonts: dict[tuple[str, int], _FontInfo] = {}
        self._n_glyphs = 0
        self._banks: dict[str, list[np.ndarray]] = {}
        self._noise: np.ndarray | None = None

    # -- fonts -------------------------------------------------------------------------------------
    def _font(self, path: str, size: int) -> _FontInfo:
        key = (path, size)
        info = self._fonts.get(key)
        if info is None:
            font = ImageFont.truetype(path, size)
            box = font.getbbox("가", anchor="lm")
            band = (box[1], box[3]) if box[3] > box[1] else (-size // 3, size // 3)
            info = _FontInfo(font, band)
            self._fonts[key] = info
        return info

    def warm(self, chars: dict[str, set[str]] | None = None) -> None:
        """Build background textures and the plain-pen glyphs of ``chars`` (font path -> characters) now:
        done before forking workers, they share them instead of each building its own."""
        kinds = list(MIXED_WEIGHTS) if self.o.background == "mixed" else [self.o.background]
        for kind in kinds:
            if kind != "plain":
                self._bank(kind)
        if self.o.augment:
            self._noise_field()
        for path, cs in (chars or {}).items():
            info = self._font(str(path), self.o.height)
            for ch in cs:
                if (ch, 0) not in info.glyphs and self._n_glyphs < GLYPH_CACHE:
                    info.glyphs[ch, 0] = _glyph(info.font, ch, 0)
                    self._n_glyphs += 1

    # -- backgrounds -------------------------------------------------------------------------------
    def _bank(self, kind: str) -> list[np.ndarray]:
        bank = self._banks.get(kind)
        if bank is None:
            rng = np.random.default_rng([self.seed, BACKGROUNDS.index(kind)])
            bank = [_make_background(kind, self.o.height, BANK_WIDTH, rng) for _ in range(BANK_SIZE)]
            self._banks[kind] = bank
        return bank

    def _noise_field(self) -> np.ndarray:
        if self._noise is None:
            rng = np.random.default_rng([self.seed, 99])
            self._noise = rng.standard_normal((self.o.height, BANK_WIDTH)).astype(np.float32)
        return self._noise

    def _background(self, kind: str, width: int, rng: random.Random) -> Image.Image:
        h = self.o.height
        if kind == "plain":
            level = rng.randint(235, 255) if self.o.augment else 255
            return Image.new("L", (width, h), level)
        arr = rng.choice(self._bank(kind))
        if width > BANK_WIDTH:
            return Image.fromarray(arr).resize((width, h), Image.Resampling.BILINEAR)
        x = rng.randint(0, BANK_WIDTH - width)
        return Image.fromarray(arr[:, x : x + width])

    # -- the renderer ------------------------------------------------------------------------------
    def render(self, text: str, font_path: str | Path, rng: random.Random) -> Image.Image:
        """One crop of ``text`` in the font at ``font_path``: mode L (or RGB for coloured ink).

        The steps draw from ``rng`` in a fixed order (pen, layout, skew, margins, background, degradations),
        so a crop is a pure function of (options, seed, text, font, rng).
        """
        o, aug = self.o, self.o.augment
        info = self._font(str(font_path), o.height)
        stroke = 0  # pen width: 1, 2 bolder (stroke), -1 thinner (eroded)
        if aug and rng.random() < o.stroke_prob:
            stroke = (1 if rng.random() < 0.8 else 2) if rng.random() < 0.6 else -1
        mask, mid = self._ink_mask(text, info, stroke, rng)
        mask = self._skew_and_crop(mask, mid, info, rng, f"{text!r} with {Path(font_path).name}")
        mask, (mt, ml, mr) = self._fit_height(mask, rng)
        kind = o.background
        if kind == "mixed":
            kind = rng.choices(list(MIXED_WEIGHTS), weights=list(MIXED_WEIGHTS.values()))[0]
        img = self._background(kind, mask.width + ml + mr, rng)
        ink = rng.randint(0, 70) if aug else 0
        img.paste(ink, (ml, mt, ml + mask.width, mt + mask.height), mask)
        return self._degrade(img, rng)

    def _ink_mask(
        self, text: str, info: _FontInfo, stroke: int, rng: random.Random
    ) -> tuple[Image.Image, int]:
        """(the text's ink as an L mask, the anchor row in it): per-character advances with spacing and
        baseline jitter; glyphs are drawn once and cached."""
        o, aug = self.o, self.o.augment
        size = o.height
        jitter = aug and len(text) > 1
        xs, ys, glyphs, x = [], [], [], 0.0
        for ch in text:
            g = info.glyphs.get((ch, stroke))
            if g is None:
                g = info.glyphs[ch, stroke] = _glyph(info.font, ch, stroke)
                self._n_glyphs += 1
            glyphs.append(g)
            xs.append(x)
            ys.append(rng.uniform(-o.baseline_jitter, o.baseline_jitter) * size if jitter else 0.0)
            x += g[3] + (rng.uniform(-o.spacing_jitter, o.spacing_jitter) * size if jitter else 0.0)
        text_w = max(x, xs[-1] + glyphs[-1][3])
        pad = size // 8 + max(stroke, 0) + 2
        canvas_w = int(text_w) + 2 * pad
        # rows relative to the anchor line: the glyphs' ink, and at least a Hangul syllable's band
        top, bottom = info.band
        for (glyph, _, gy, _), cy in zip(glyphs, ys, strict=True):
            if glyph is not None:
                top, bottom = min(top, round(cy) + gy), max(bottom, round(cy) + gy + glyph.height)
        canvas_h = bottom - top + 2 * pad
        mid = pad - top
        fill = round(255 * rng.uniform(o.contrast_min, 1.0)) if aug else 255  # ink opacity: contrast
        mask = Image.new("L", (canvas_w, canvas_h), 0)
        for (glyph, gx, gy, _), cx, cy in zip(glyphs, xs, ys, strict=True):
            if glyph is not None:
                mask.paste(fill, (round(pad + cx) + gx, round(mid + cy) + gy), glyph)
        if self._n_glyphs > GLYPH_CACHE:
            for f in self._fonts.values():
                f.glyphs.clear()
            self._n_glyphs = 0
        return mask, mid

    def _skew_and_crop(
        self, mask: Image.Image, mid: float, info: _FontInfo, rng: random.Random, what: str
    ) -> Image.Image:
        """Skew (rotation or mesh distortion), then crop to the ink, keeping at least the Hangul band."""
        o = self.o
        canvas_h = mask.height
        angle = rng.uniform(-o.skew, o.skew) if o.skew else 0.0
        if o.augment and rng.random() < o.distort_prob:
            mask = _mesh_distort(mask, o.height, o.distort_strength, angle, rng)
        elif angle:
            mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True)
        mid += (mask.height - canvas_h) / 2  # rotation keeps the centre
        box = mask.getbbox()
        if box is None:
            raise RenderError(f"no ink for {what}")
        top = min(box[1], round(mid) + info.band[0])
        bottom = max(box[3], round(mid) + info.band[1])
        return mask.crop((box[0], top, box[2], bottom))

    def _fit_height(self, mask: Image.Image, rng: random.Random) -> tuple[Image.Image, tuple[int, int, int]]:
        """The mask scaled to the crop height inside the (jittered) margins; (top, left, right) margins."""
        o = self.o
        mt, ml, mb, mr = o.margins
        if o.augment and o.margin_jitter:
            j = o.margin_jitter
            mt, ml, mb, mr = (
                mt + rng.randint(0, j),
                ml + rng.randint(0, j),
                mb + rng.randint(0, j),
                mr + rng.randint(0, j),
            )
        text_h = max(8, o.height - mt - mb)
        mt = min(mt, o.height - text_h)
        w = max(1, round(mask.width * text_h / mask.height))
        return mask.resize((w, text_h), Image.Resampling.BILINEAR), (mt, ml, mr)

    def _degrade(self, img: Image.Image, rng: random.Random) -> Image.Image:
        """Blur, sensor noise and coloured ink, each with its probability (augmentation only)."""
        o, aug = self.o, self.o.augment
        if aug and rng.random() < o.blur_prob:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, o.blur_max)))
        if aug and rng.random() < o.noise_prob:
            sigma = rng.uniform(2.0, o.noise_max)
            field_ = self._noise_field()
            x = rng.randint(0, max(0, BANK_WIDTH - img.width))
            noise = field_[:, x : x + img.width]
            if noise.shape[1] < img.width:
                noise = np.resize(noise, (img.height, img.width))
            arr = np.asarray(img, dtype=np.float32) + noise * sigma
            img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if aug and rng.random() < o.color_prob:
            img = _colorize(img, rng.choice(COLOR_LUTS))
        return img

    def save(self, img: Image.Image, path: str | Path, fmt: str = "jpg") -> None:
        if fmt == "jpg":
            img.save(path, format="JPEG", quality=self.o.jpeg_quality)
        else:
            img.save(path, format="PNG", compress_level=1)


def _glyph(font: ImageFont.FreeTypeFont, ch: str, stroke: int) -> tuple[Image.Image | None, int, int, float]:
    """(ink mask or None for blank, x and y offset from the left-middle anchor, advance) of one character.

    ``stroke`` > 0 draws a bolder pen (Pillow's stroke), -1 a thinner one (the glyph eroded by one pixel).
    """
    width = max(stroke, 0)
    x0, y0, x1, y1 = font.getbbox(ch, anchor="lm", stroke_width=width)
    advance = font.getlength(ch)
    if x1 <= x0 or y1 <= y0:
        return None, 0, 0, advance
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    ImageDraw.Draw(img).text((-x0, -y0), ch, fill=255, font=font, anchor="lm", stroke_width=width)
    if stroke < 0:
        img = img.filter(ImageFilter.MinFilter(3))
    return (img if img.getbbox() else None), x0, y0, advance


def _color_lut(black: tuple, white: tuple) -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)[:, None]
    return np.round(np.array(black) * (1 - t) + np.array(white) * t).astype(np.uint8)


COLOR_LUTS = [_color_lut(ink, paper) for ink in INKS for paper in PAPERS]


def _colorize(img: Image.Image, lut: np.ndarray) -> Image.Image:
    """Grey levels mapped linearly from ink colour to paper colour (ImageOps.colorize, as one lookup)."""
    return Image.fromarray(lut[np.asarray(img)], "RGB")


def _mesh_distort(
    mask: Image.Image, size: int, strength: float, angle: float, rng: random.Random
) -> Image.Image:
    """Rotation (as ``rotate(expand=True)``), elastic jitter and a wave, in one Pillow MESH transform."""
    w, h = mask.size
    t = -math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    out_w = math.ceil(abs(w * c) + abs(h * s))
    out_h = math.ceil(abs(w * s) + abs(h * c))
    cell = max(16, size)
    nx, ny = max(1, out_w // cell), 2
    amp = strength * size
    wave_amp = rng.uniform(0, 1.5 * amp)
    period = rng.uniform(1.5, 4.0) * size
    phase = rng.uniform(0, 2 * math.pi)
    xs = [round(i * out_w / nx) for i in range(nx + 1)]
    ys = [round(j * out_h / ny) for j in range(ny + 1)]
    pts = {}
    for i, x in enumerate(xs):
        dy_wave = wave_amp * math.sin(2 * math.pi * x / period + phase)
        for j, y in enumerate(ys):
            rx, ry = x - out_w / 2, y - out_h / 2
            sx = c * rx + s * ry + w / 2 + rng.uniform(-amp, amp)
            sy = -s * rx + c * ry + h / 2 + dy_wave + rng.uniform(-amp, amp)
            pts[i, j] = (sx, sy)
    mesh = []
    for i in range(nx):
        for j in range(ny):
            box = (xs[i], ys[j], xs[i + 1], ys[j + 1])
            quad = (*pts[i, j], *pts[i, j + 1], *pts[i + 1, j + 1], *pts[i + 1, j])
            mesh.append((box, quad))
    return mask.transform((out_w, out_h), Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)


def _make_background(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A light texture (uint8, h x w) of one kind; text contrast stays readable."""
    if kind == "noise":
        arr = rng.normal(rng.uniform(225, 245), rng.uniform(6, 16), (h, w))
    elif kind == "paper":
        coarse = rng.normal(0, 1, (max(2, h // 16), max(2, w // 16))).astype(np.float32)
        low = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BICUBIC))
        arr = rng.uniform(228, 245) + 6 * low + rng.normal(0, 3, (h, w))
        for _ in range(int(w / 40)):  # faint short fibres, either direction (long dark ones read as "_")
            y, x = rng.integers(0, h), rng.integers(0, w)
            length = int(rng.integers(3, 12))
            if rng.random() < 0.5:
                arr[y, x : x + length] -= rng.uniform(4, 12)
            else:
                arr[y : y + length, x] -= rng.uniform(4, 12)
    elif kind == "quasicrystal":
        freq = rng.uniform(0.05, 0.15)
        phase = rng.uniform(0, 2 * np.pi)
        rot = int(rng.integers(5, 10))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        acc = np.zeros((h, w), np.float32)
        for k in range(rot):
            th = k * np.pi / rot
            acc += np.cos((xx * np.cos(th) + yy * np.sin(th)) * freq * 2 * np.pi + phase)
        acc = (acc - acc.min()) / (np.ptp(acc) or 1.0)
        arr = 195 + 60 * acc
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(arr, 0, 255).astype(np.uint8)

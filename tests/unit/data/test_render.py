"""The Pillow renderer with real handwriting fonts: deterministic, right size, readable, every option runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ocrtune.data.font_fetch import fetch_fonts
from ocrtune.data.fonts import load_fonts
from ocrtune.data.render import BACKGROUNDS, Renderer, RenderError, RenderOptions, sample_rng
from ocrtune.errors import UserError


@pytest.fixture(scope="module")
def fonts():
    try:
        return load_fonts()
    except UserError:
        return fetch_fonts()  # what `make test` does first; cached afterwards


@pytest.fixture(scope="module")
def font(fonts):
    return next(f.path for f in fonts if f.name in ("NanumPenScript", "NanumPen")) if fonts else None


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_same_seed_same_bytes_other_index_other_image(font):
    a = Renderer(RenderOptions(background="mixed"), seed=7)
    b = Renderer(RenderOptions(background="mixed"), seed=7)  # a fresh process-like renderer
    texts = ["안녕하세요", "2024-03-15", "손글씨 연습"]
    for i, t in enumerate(texts):
        assert _jpeg(a.render(t, font, sample_rng(7, i))) == _jpeg(b.render(t, font, sample_rng(7, i)))
    # order of rendering does not matter: a sample is a function of (seed, index) only
    late = _jpeg(b.render(texts[0], font, sample_rng(7, 0)))
    assert late == _jpeg(a.render(texts[0], font, sample_rng(7, 0)))
    assert _jpeg(a.render(texts[0], font, sample_rng(7, 1))) != late
    assert (
        _jpeg(Renderer(RenderOptions(background="mixed"), seed=8).render(texts[0], font, sample_rng(8, 0)))
        != late
    )


@pytest.mark.parametrize("height", [32, 64, 80])
def test_height_and_aspect(font, height):
    r = Renderer(RenderOptions(height=height, skew=0, augment=False))
    short = r.render("가", font, sample_rng(0, 0))
    long = r.render("가나다라마바사", font, sample_rng(0, 0))
    assert short.height == long.height == height
    assert long.width > 4 * short.width


def test_plain_trdg_like_rendering_is_tight_black_on_white(font):
    r = Renderer(RenderOptions(skew=0, augment=False, background="plain"))
    img = np.asarray(r.render("한국어", font, sample_rng(0, 0)))
    assert img.ndim == 2
    assert img.min() < 40 and np.median(img) == 255  # dark ink on white
    # tight crop: ink touches the left and right edges (zero margins)
    inked = np.flatnonzero(img.min(axis=0) < 128)
    assert inked[0] <= 2 and inked[-1] >= img.shape[1] - 3


def test_margins_are_background(font):
    r = Renderer(RenderOptions(skew=15, augment=False, margins=(6, 5, 7, 9)))
    for i in range(5):
        img = np.asarray(r.render("필기체 인식", font, sample_rng(0, i)))
        assert img.shape[0] == 64
        assert (img[:6] == 255).all() and (img[-7:] == 255).all()
        assert (img[:, :5] == 255).all() and (img[:, -9:] == 255).all()
        assert img[6:-7, 5:-9].min() < 60


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_every_background_keeps_text_readable(font, background):
    r = Renderer(RenderOptions(background=background, augment=True), seed=1)
    for i in range(20):
        img = np.asarray(r.render("우리 나라", font, sample_rng(1, i)).convert("L"), dtype=np.float32)
        assert img.shape[0] == 64
        bg = np.percentile(img, 90)
        ink = np.percentile(img, 1)
        assert bg > 150 and bg - ink > 60, (background, i, bg, ink)


def test_augmentation_varies_images(font):
    r = Renderer(RenderOptions(background="plain", augment=True, skew=0))
    plain = Renderer(RenderOptions(background="plain", augment=False, skew=0))
    widths = {r.render("가나다", font, sample_rng(0, i)).size for i in range(30)}
    modes = {r.render("가나다", font, sample_rng(0, i)).mode for i in range(30)}
    assert len(widths) > 10 and modes == {"L", "RGB"}  # spacing/margins jitter, coloured ink
    assert len({plain.render("가나다", font, sample_rng(0, i)).size for i in range(10)}) == 1


def test_every_fetched_font_renders(fonts):
    r = Renderer(RenderOptions(background="mixed"))
    for i, f in enumerate(fonts):
        img = r.render("글씨 123", f.path, sample_rng(0, i))
        assert img.height == 64 and img.width > 64, f.name


def test_no_ink_is_an_error(font):
    with pytest.raises(RenderError, match="no ink"):
        Renderer(RenderOptions(augment=False)).render("   ", font, sample_rng(0, 0))

"""Our preprocessing against EasyOCR's own functions on the same images: the tensors must be equal."""

from __future__ import annotations

import glob
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ocrtune.errors import UserError
from ocrtune.model.preprocess import (
    pad_batch,
    preprocess,
    preprocess_with_width,
    reader_tensor,
    reader_width,
    to_gray,
    width_bucket,
)

easyocr_utils = pytest.importorskip("easyocr.utils")
easyocr_rec = pytest.importorskip("easyocr.recognition")

KOREAN_FONTS = sorted(
    glob.glob("/usr/share/fonts/truetype/nanum/NanumPen*.ttf")
    + glob.glob("/usr/share/fonts/truetype/nanum/*.ttf")
    + glob.glob("/usr/share/fonts/truetype/unfonts-core/*.ttf")
)
WORDS = ["가고싶다", "한국어", "손글씨 인식", "OCR 2024!", "나", "대한민국 만세", "ㄱ", "값비싼 닭볶음탕"]


def korean_font() -> str:
    if not KOREAN_FONTS:
        pytest.fail("no Korean font installed (fonts-nanum): the parity test needs one")
    return KOREAN_FONTS[0]


def render(text: str, size: int, rng: random.Random, rgb: bool = True, tall: bool = False) -> Image.Image:
    font = ImageFont.truetype(korean_font(), size)
    left, top, right, bottom = font.getbbox(text)
    pad = rng.randint(2, 12)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    if tall:
        w, h = h, max(h * 3, w)
    bg = tuple(rng.randint(180, 255) for _ in range(3))
    img = Image.new("RGB", (w, h), bg)
    ink = tuple(rng.randint(0, 90) for _ in range(3))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=ink)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return img if rgb else img.convert("L")


def images(rng: random.Random) -> list[Image.Image]:
    out = []
    for i, word in enumerate(WORDS):
        for size in (14, 31, 48, 90):
            out.append(render(word, size, rng, rgb=i % 2 == 0))
    out.append(render("세로", 40, rng, tall=True))
    # real-looking gray crops: noisy paper, low contrast (triggers the contrast retry path)
    arr = np.clip(rng.gauss(0, 1) + np.random.default_rng(1).normal(200, 12, (37, 211)), 0, 255)
    arr[12:25, 20:190] -= 25
    out.append(Image.fromarray(arr.astype(np.uint8), "L"))
    out.append(Image.fromarray(np.full((64, 64), 255, np.uint8), "L"))  # square, blank
    out.append(Image.fromarray(np.random.default_rng(2).integers(0, 256, (5, 300), dtype=np.uint8), "L"))
    return out


def easyocr_tensor(grey: np.ndarray, adjust_contrast: float = 0.0) -> torch.Tensor:
    """What Reader.recognize(grey) hands the model: get_image_list, then AlignCollate on that crop."""
    y_max, x_max = grey.shape
    image_list, max_width = easyocr_utils.get_image_list([[0, x_max, 0, y_max]], [], grey, model_height=64)
    collate = easyocr_rec.AlignCollate(
        imgH=64, imgW=int(max_width), keep_ratio_with_pad=True, adjust_contrast=adjust_contrast
    )
    return collate([Image.fromarray(crop, "L") for _, crop in image_list])


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    rng = random.Random(7)
    root = tmp_path_factory.mktemp("crops")
    paths = []
    for i, img in enumerate(images(rng)):
        ext = "jpg" if i % 3 == 0 else "png"
        path = root / f"crop_{i:03d}.{ext}"
        img.save(path, quality=90) if ext == "jpg" else img.save(path)
        paths.append(path)
    return paths


def test_paths_identical_to_easyocr(samples):
    """From a file path (Reader reads it with cv2 IMREAD_GRAYSCALE): same tensor, max abs diff 0."""
    for path in samples:
        grey, _ = easyocr_utils.reformat_input(str(path))[1], None
        ours = reader_tensor(path)
        theirs = easyocr_tensor(grey)
        assert ours.shape == theirs.shape, path
        assert torch.equal(ours, theirs), (path, (ours - theirs).abs().max())
        # bytes of the file decode to the same gray image as the path
        assert np.array_equal(to_gray(path.read_bytes()), grey)


def test_contrast_retry_identical(samples):
    for path in samples:
        grey = easyocr_utils.reformat_input(str(path))[1]
        assert torch.equal(reader_tensor(path, adjust_contrast=0.5), easyocr_tensor(grey, 0.5)), path


def test_arrays_and_pil_identical_to_reformat_input(samples):
    """BGR, RGBA, gray and PIL-JPEG inputs become the gray image Reader's reformat_input makes."""
    for path in samples[:12]:
        pil = Image.open(path)
        rgb = np.asarray(pil.convert("RGB"))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        rgba = np.asarray(pil.convert("RGBA"))
        gray = np.asarray(pil.convert("L"))
        for arr in (bgr, rgba, gray, gray[:, :, None]):
            theirs = easyocr_utils.reformat_input(arr)[1]
            assert np.array_equal(to_gray(arr), theirs)
            assert torch.equal(reader_tensor(arr), easyocr_tensor(theirs))
        if pil.format == "JPEG" and pil.mode == "RGB":
            assert np.array_equal(to_gray(pil), easyocr_utils.reformat_input(pil)[1])


def test_batch_equals_easyocr_batch(samples):
    """A batch of crops sharing a padded width equals EasyOCR's AlignCollate batch of the same crops."""
    by_width: dict[int, list] = {}
    for path in samples:
        arr, width = preprocess_with_width(path)
        by_width.setdefault(width, []).append((path, arr))
    bucket = max(by_width.values(), key=len)
    assert len(bucket) >= 3
    width = preprocess_with_width(bucket[0][0])[1]
    ours = pad_batch([a for _, a in bucket], width)
    greys = [easyocr_utils.reformat_input(str(p))[1] for p, _ in bucket]
    crops = [easyocr_utils.get_image_list([[0, g.shape[1], 0, g.shape[0]]], [], g)[0][0][1] for g in greys]
    collate = easyocr_rec.AlignCollate(imgH=64, imgW=width, keep_ratio_with_pad=True)
    assert torch.equal(ours, collate([Image.fromarray(c, "L") for c in crops]))


def test_shapes_and_range(samples):
    for path in samples:
        arr = preprocess(path)
        assert arr.dtype == np.float32 and arr.shape[0] == 64
        assert arr.min() >= -1.0 and arr.max() <= 1.0
        w, h = Image.open(path).size
        assert arr.shape[1] <= reader_width(w, h)
        assert reader_width(w, h) % 64 == 0
    assert width_bucket(1) == 64 and width_bucket(64) == 64 and width_bucket(65) == 128


def test_pad_repeats_last_column():
    a = np.linspace(-1, 1, 64 * 5, dtype=np.float32).reshape(64, 5)
    b = np.zeros((64, 9), np.float32)
    batch = pad_batch([a, b])
    assert batch.shape == (2, 1, 64, 9)
    assert torch.equal(batch[0, 0, :, 5:], torch.from_numpy(a[:, 4:5]).expand(64, 4))
    assert pad_batch([a], width=128).shape == (1, 1, 64, 128)


def test_bad_images(tmp_path):
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        preprocess(bad)
    with pytest.raises(UserError, match="do not decode"):
        preprocess(b"garbage")
    with pytest.raises(UserError, match="empty image"):
        preprocess(np.zeros((0, 10), np.uint8))
    with pytest.raises(UserError, match="uint8"):
        preprocess(np.zeros((10, 10), np.float32))

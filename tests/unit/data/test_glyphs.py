"""Glyph coverage is rendered, not read from the cmap: empty glyphs and .notdef boxes never count as drawn."""

from __future__ import annotations

import functools
import json
import random
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from ocrtune.charsets import all_syllables, is_hangul, load_charset
from ocrtune.data.font_fetch import fetch_fonts
from ocrtune.data.glyphs import (
    LATIN_DIGITS,
    can_draw,
    coverage,
    coverage_table,
    drawn_chars,
    flag,
    mapped_codepoints,
)
from ocrtune.errors import UserError

DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@pytest.fixture(scope="session")
def fonts():
    """The real fetched fonts (the default cache when `make test` already fetched them)."""
    return {f.name: f for f in fetch_fonts()}


def _outlined(path: str | Path, codepoints) -> set[str]:
    """Characters whose glyph has an outline, read with fontTools: independent of Pillow's rendering."""
    tt = TTFont(str(path))
    cmap, glyf = tt.getBestCmap(), tt["glyf"]
    return {chr(c) for c in codepoints if c in cmap and glyf[cmap[c]].numberOfContours != 0}


@functools.cache
def _pil_font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, 48)


def _ink(path: str | Path, ch: str) -> int:
    """Dark pixels when ``ch`` is drawn on white with ImageDraw, as a renderer would."""
    font = _pil_font(str(path))
    img = Image.new("L", (120, 120), 255)
    ImageDraw.Draw(img).text((20, 20), ch, font=font, fill=0)
    return int((np.asarray(img) < 128).sum())


def _nanum_square() -> Path:
    """NanumSquareL from fonts-nanum-extra (installed by `fonts fetch`): a real font whose cmap maps all
    11,172 syllables while most of their glyphs are empty."""
    try:
        listed = subprocess.run(["dpkg", "-L", "fonts-nanum-extra"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        listed = ""
    for line in listed.splitlines():
        if line.endswith("/NanumSquareL.ttf"):
            return Path(line)
    pytest.skip("fonts-nanum-extra is not installed (no apt here), so NanumSquareL.ttf is not available")


def test_empty_glyphs_claimed_by_the_cmap_are_not_drawn(tmp_path):
    path = _nanum_square()
    syllables = all_syllables()
    mapped = {chr(c) for c in mapped_codepoints(path)} & set(syllables)
    drawn = drawn_chars(path, syllables, cache_dir=tmp_path)
    assert len(mapped) == len(syllables)  # the cmap claims every syllable ...
    assert len(mapped) - len(drawn) > 5000  # ... yet thousands are blank
    assert set(drawn) == _outlined(path, map(ord, syllables))
    blank = next(c for c in syllables if c in mapped and c not in drawn)
    assert _ink(path, blank) == 0  # drawing it really leaves nothing
    assert _ink(path, drawn[0]) > 0
    assert not can_draw(drawn, f"가{blank}")


def test_gaegu_draws_only_part_of_the_syllables(fonts, tmp_path):
    gaegu = fonts["Gaegu"]
    syllables = all_syllables()
    drawn = drawn_chars(gaegu, syllables, cache_dir=tmp_path)
    assert 0 < len(drawn) < len(syllables) // 3
    assert set(drawn) <= {chr(c) for c in mapped_codepoints(gaegu)}
    # an independent render (ImageDraw, another size and layout) of a sample agrees character by character
    sample = random.Random(0).sample(syllables, 150) + [drawn[0], drawn[-1]]
    assert [_ink(gaegu.path, c) > 0 for c in sample] == [c in drawn for c in sample]
    k = load_charset("korean_g2")
    assert can_draw(drawn_chars(gaegu, k, cache_dir=tmp_path), "가나다 라마")


def test_notdef_boxes_are_not_drawn_characters(tmp_path):
    k = load_charset("korean_g2")
    assert _ink(DEJAVU, "가") > 0  # FreeType draws DejaVu's .notdef box for a syllable it lacks
    drawn = drawn_chars(DEJAVU, k, cache_dir=tmp_path)
    assert not any(is_hangul(c) for c in drawn)
    assert set(LATIN_DIGITS) <= set(drawn)
    assert flag(drawn, k, "korean_g2") == "draws none of the 913 Hangul syllables of korean_g2"
    assert drawn_chars(DEJAVU, "가나다", cache_dir=tmp_path) == ""
    assert flag("", "가나다") == "draws none of the 3 Hangul syllables of the charset"
    # a Latin charset: a font lacking only the euro sign is usable, one without letters is not
    e = load_charset("english_g2")
    assert flag(drawn_chars(DEJAVU, e, cache_dir=tmp_path).replace("€", ""), e) is None
    assert flag(drawn_chars(DEJAVU, "가나다", cache_dir=tmp_path), e, "english_g2").startswith(
        "draws none of the 62"
    )


@pytest.mark.parametrize("name", ["UnPen", "NanumPen", "NanumPenScript"])
def test_full_coverage_fonts_draw_all_korean_g2(fonts, name, tmp_path):
    if name not in fonts:
        pytest.skip(f"{name} was not fetched here (apt or npm not usable)")
    k = load_charset("korean_g2")
    hangul = "".join(c for c in k if is_hangul(c))
    drawn = drawn_chars(fonts[name], hangul, cache_dir=tmp_path)
    assert drawn == hangul and len(drawn) == 913
    assert flag(drawn_chars(fonts[name], k, cache_dir=tmp_path), k, "korean_g2") is None


def test_cached_per_font_and_charset(fonts, tmp_path):
    font = fonts["Gaegu"]
    first = drawn_chars(font, "가나똠똥A ", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text("utf-8"))
    assert record["font_sha256"] == font.sha256 and record["drawn"] == first
    mtime = files[0].stat().st_mtime_ns
    assert drawn_chars(font, "가나똠똥A ", cache_dir=tmp_path) == first
    assert files[0].stat().st_mtime_ns == mtime
    drawn_chars(font, "가나", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.json"))) == 2
    # a path gives the same answer as the Font, and an unwritable cache only costs time
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert drawn_chars(font.path, "가나똠똥A ", cache_dir=not_a_dir) == first


def test_can_draw():
    assert can_draw("가나", "가 나")
    assert can_draw(set("가나"), "")
    assert not can_draw({"가"}, "가나")
    assert can_draw("", "   ")


def test_not_a_font_is_a_user_error(tmp_path):
    bad = tmp_path / "fake.ttf"
    bad.write_bytes(b"this is not a font\n" * 50)
    with pytest.raises(UserError, match="fake.ttf: not a"):
        drawn_chars(bad, "가")


def test_coverage_row(fonts, tmp_path):
    k = load_charset("korean_g2")
    row = coverage(fonts["Gaegu"], k, "korean_g2", cache_dir=tmp_path)
    assert row["syllables_total"] == 11172
    assert row["syllables_drawn"] == len(drawn_chars(fonts["Gaegu"], all_syllables(), cache_dir=tmp_path))
    assert row["syllables_mapped"] >= row["syllables_drawn"]
    assert row["charset_total"] == len(k) and row["latin_digits_total"] == 62
    assert row["flag"] is None


def test_coverage_table_in_parallel_matches_serial(fonts, tmp_path):
    k = load_charset("korean_g2")
    chosen = [fonts["Gaegu"], fonts["EastSeaDokdo"]]
    parallel = coverage_table(chosen, k, "korean_g2", cache_dir=tmp_path / "a", workers=2)
    serial = [coverage(f, k, "korean_g2", cache_dir=tmp_path / "b") for f in chosen]
    assert parallel == serial
    assert [r["name"] for r in parallel] == ["Gaegu", "EastSeaDokdo"]

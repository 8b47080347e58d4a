"""Charsets come from EasyOCR's own config: korean_g2 is 95 ASCII + 913 syllables."""

from __future__ import annotations

import pytest

from ocrtune.charsets import describe, load_charset, model_info
from ocrtune.errors import UserError


def test_korean_g2_matches_easyocr():
    k = load_charset("korean_g2")
    assert describe(k) == {"total": 1008, "hangul": 913, "ascii": 95, "other": 0}
    assert model_info("korean_g2")["md5sum"] == "befecf7b1ca2fffb5af814a51443682d"


def test_custom_charset_file(tmp_path):
    one_per_line = tmp_path / "a.txt"
    one_per_line.write_text("가\n나\n가\nA\n", encoding="utf-8")
    assert load_charset(one_per_line) == "가나A"
    one_line = tmp_path / "b.txt"
    one_line.write_text("abc가\n", encoding="utf-8")
    assert load_charset(one_line) == "abc가"


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00a"])
def test_bad_charset_files(tmp_path, content):
    p = tmp_path / "c.txt"
    p.write_bytes(content)
    with pytest.raises(UserError, match=str(p)):
        load_charset(p)


def test_unknown_charset_name():
    with pytest.raises(UserError, match="unknown charset 'klingon_g2'"):
        load_charset("klingon_g2")

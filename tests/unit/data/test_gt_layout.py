"""The gt.txt layout: strict reading of gt.txt and the samples.tsv sidecar, errors naming the line."""

from __future__ import annotations

import re

import pytest

from ocrtune.data.gt_layout import read_gt, read_samples
from ocrtune.errors import UserError

# ---------------------------------------------------------------- reading


def test_read_gt_tolerates_bom_crlf_and_blank_lines(tmp_path):
    (tmp_path / "gt.txt").write_bytes(
        "\ufeffimages/a.jpg\t안녕 하세요\r\n\nimages/b.jpg\t  two spaces \r\nimages/c.jpg\t\n".encode()
    )
    assert read_gt(tmp_path) == [
        ("images/a.jpg", "안녕 하세요"),
        ("images/b.jpg", "  two spaces "),
        ("images/c.jpg", ""),
    ]
    assert read_samples(tmp_path) == {}
    (tmp_path / "samples.tsv").write_text("images/a.jpg\tNanumPen\tcoverage\n", encoding="utf-8")
    assert read_samples(tmp_path) == {"images/a.jpg": ("NanumPen", "coverage")}


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"images/a.jpg\tok\nimages/b.jpg\tok\nimages/c.jpg\t\xbe\xc8\xb3\xe7\n",
            r"gt.txt:3: not UTF-8",
        ),  # EUC-KR
        (b"images/a.jpg\tok\nimages/b.jpg ok\n", r"gt.txt:2: expected 'path<TAB>label', found no tab"),
        (b"/etc/passwd\tok\n", r"gt.txt:1: image path '/etc/passwd' must be relative"),
        (b"images/../../x.jpg\tok\n", r"gt.txt:1: image path 'images/../../x.jpg' must be relative"),
        (b"images/a.jpg\tone\ttwo\n", r"gt.txt:1: more than one tab"),
        (b"\n\n", r"gt.txt: no samples"),
    ],
)
def test_read_gt_errors_name_the_line(tmp_path, content, message):
    (tmp_path / "gt.txt").write_bytes(content)
    with pytest.raises(UserError, match=re.escape(str(tmp_path)) + ".*" + message):
        read_gt(tmp_path)


def test_read_gt_without_gt(tmp_path):
    with pytest.raises(UserError, match="no gt.txt"):
        read_gt(tmp_path)


def test_samples_sidecar_errors(tmp_path):
    (tmp_path / "samples.tsv").write_text("images/a.jpg\tNanumPen\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"samples.tsv:1: expected 'path<TAB>font<TAB>source', found 2"):
        read_samples(tmp_path)

"""Importers into the gt.txt layout: trdg conversion (both naming schemes), labels.csv, real crops."""

from __future__ import annotations

import io
import re
import resource
import signal
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.cli import REPO, run_cli

from ocrtune.data.gt_layout import read_samples
from ocrtune.data.importers import convert_trdg, import_crops
from ocrtune.data.lmdb import LmdbReader
from ocrtune.errors import UserError


def word_image(text: str, size=(180, 48), fmt="JPEG", **save) -> bytes:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text((6, 12), text.encode("ascii", "replace").decode(), fill="black")
    buf = io.BytesIO()
    im.save(buf, format=fmt, **save)
    return buf.getvalue()


def trdg_file_name(text: str, index: int, name_format: int, ext: str = "jpg") -> str:
    """The names trdg 1.8.0 gives files: NFKC, then only word characters, spaces and '-' kept, 200 max."""
    name = f"{text}_{index}" if name_format == 0 else f"{index}_{text}"
    name = re.sub(r"[^\w\s-]", "", unicodedata.normalize("NFKC", name))[:200]
    return f"{name}.{ext}"


def gt_of(dst: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in (dst / "gt.txt").read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- trdg


def test_convert_trdg_default_names(tmp_path):
    src = tmp_path / "trdg"
    src.mkdir()
    words = ["안녕 하세요", "hello_world", "값", "2024", "읽기!", "fünf", "끝"]
    for i, w in enumerate(words):
        (src / trdg_file_name(w, i, 0)).write_bytes(word_image(w))
    (src / trdg_file_name("가방", 10, 0)).write_bytes(word_image("x"))  # 10 sorts after 9, not after 1
    (src / trdg_file_name("나무", 9, 0)).write_bytes(word_image("x"))
    (src / "나무_9_mask.png").write_bytes(word_image("m", fmt="PNG"))  # trdg -om 1 side output
    (src / "broken_11.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "notes.jpg").write_bytes(word_image("n"))
    (src / "readme.txt").write_text("not an image")

    stats = convert_trdg(src, tmp_path / "out")
    assert stats["name_format"] == 0 and stats["written"] == 9 and "trdg drops punctuation" in stats["note"]
    assert stats["skipped"] == {"image unreadable": 1, "trdg mask file ignored": 1, "file name not trdg's": 1}
    gt = gt_of(tmp_path / "out")
    # punctuation was dropped by trdg when it named the file: '읽기!' comes back as '읽기'
    assert [label for _, label in gt] == [
        "안녕 하세요",
        "hello_world",
        "값",
        "2024",
        "읽기",
        "fünf",
        "끝",
        "나무",
        "가방",
    ]
    assert [p for p, _ in gt] == [f"images/image_{i:06d}.jpg" for i in range(9)]
    assert (tmp_path / "out" / gt[0][0]).read_bytes() == (src / "안녕 하세요_0.jpg").read_bytes()


def test_convert_trdg_index_first_and_nfd_names(tmp_path):
    src = tmp_path / "trdg"
    src.mkdir()
    nfd = unicodedata.normalize("NFD", "한글")  # names written on macOS come back decomposed
    (src / f"0_{nfd}.png").write_bytes(word_image("a", fmt="PNG"))
    (src / "1_a_b.png").write_bytes(word_image("b", fmt="PNG"))
    stats = convert_trdg(src, tmp_path / "out", name_format=1)
    assert gt_of(tmp_path / "out") == [
        ("images/image_000000.png", "한글"),
        ("images/image_000001.png", "a_b"),
    ]
    assert stats["labels_normalized"] == 1


def test_convert_trdg_labels_txt(tmp_path):
    src = tmp_path / "trdg"
    src.mkdir()
    labels = ["읽기 쉬운, 글씨!", "A-1 (b)", "값", "없는 파일", "깨진 파일", ""]
    for i, label in enumerate(labels[:3]):
        (src / f"{i}.jpg").write_bytes(word_image(label))
    (src / "4.jpg").write_bytes(word_image("x")[:40])
    (src / "5.jpg").write_bytes(word_image("x"))
    (src / "labels.txt").write_text(
        "".join(f"{i}.jpg {label}\n" for i, label in enumerate(labels)), encoding="utf8"
    )

    stats = convert_trdg(src, tmp_path / "out")  # labels.txt present: -na 2 picked
    assert stats["name_format"] == 2 and "note" not in stats
    assert gt_of(tmp_path / "out") == [(f"images/image_{i:06d}.jpg", labels[i]) for i in range(3)]
    assert stats["skipped"] == {"image missing": 1, "image unreadable": 1, "empty label": 1}


def test_convert_trdg_bad_labels_txt(tmp_path):
    (tmp_path / "labels.txt").write_text("0.jpg 안녕\n1.jpg\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"labels.txt:2: expected '<file> <label>'"):
        convert_trdg(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_convert_trdg_all_unreadable_writes_nothing(tmp_path):
    src = tmp_path / "trdg"
    src.mkdir()
    (src / "가_0.jpg").write_bytes(b"junk")
    with pytest.raises(UserError, match=r"none of 1 trdg images could be used \(image unreadable: 1\)"):
        convert_trdg(src, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trdg"]


# ---------------------------------------------------------------- import


def test_import_labels_csv(tmp_path):
    src = tmp_path / "crops"
    src.mkdir()
    for name in ["a.png", "b.png", "c.png", "d.png", "e.png", "g.png"]:
        (src / name).write_bytes(word_image(name, fmt="PNG"))
    (src / "g.png").write_bytes(b"PNG? no")
    csv_text = (
        "filename,words\n"
        "a.png,안녕하세요\n"
        'b.png,"hello, world"\n'
        "c.png,3, 4\n"  # EasyOCR splits at the first comma only
        "d.png,漢字 한자\n"
        "e.png,\n"
        "f.png,없는 파일\n"
        "g.png,깨짐\n"
        'h.png,"two\nlines"\n'
    )
    (src / "labels.csv").write_text(csv_text, encoding="utf-8")
    stats = import_crops(src, tmp_path / "out", charset="korean_g2")
    assert gt_of(tmp_path / "out") == [
        ("images/image_000000.png", "안녕하세요"),
        ("images/image_000001.png", "hello, world"),
        ("images/image_000002.png", "3, 4"),
    ]
    assert stats["skipped"] == {
        "label outside the charset": 1,
        "empty label": 1,
        "image missing": 1,
        "image unreadable": 1,
        "label has a tab or newline": 1,
    }
    assert stats["out_of_charset_chars"] == {"漢": 1, "字": 1}
    assert read_samples(tmp_path / "out")["images/image_000001.png"] == ("real", "crops")


def test_import_gt_layout_keeps_sidecar_and_applies_exif(tmp_path):
    src = tmp_path / "crops"
    (src / "images").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone held upright
    (src / "images/1.jpg").write_bytes(word_image("turned", size=(200, 50), exif=exif.tobytes()))
    (src / "images/2.jpg").write_bytes(word_image("plain", size=(200, 50)))
    (src / "gt.txt").write_text("images/1.jpg\t돌림\nimages/2.jpg\t그대로\n", encoding="utf-8")
    (src / "samples.tsv").write_text("images/2.jpg\tMyHand\tnotebook\n", encoding="utf-8")
    stats = import_crops(src, tmp_path / "out")
    assert stats["written"] == 2 and stats["rotated_by_exif"] == 1
    gt = gt_of(tmp_path / "out")
    assert gt == [("images/image_000000.png", "돌림"), ("images/image_000001.jpg", "그대로")]
    assert Image.open(tmp_path / "out" / gt[0][0]).size == (50, 200)
    assert read_samples(tmp_path / "out") == {
        "images/image_000000.png": ("real", "crops"),
        "images/image_000001.jpg": ("MyHand", "notebook"),
    }


def test_import_refusals(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither gt.txt nor labels.csv"):
        import_crops(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "empty" / "labels.csv").write_text("file,text\na.png,x\n")
    with pytest.raises(UserError, match=r"labels.csv:1: expected the header 'filename,words'"):
        import_crops(tmp_path / "empty", tmp_path / "out")
    (tmp_path / "empty" / "labels.csv").write_text("filename,words\na.png,漢\n")
    (tmp_path / "empty" / "a.png").write_bytes(word_image("a", fmt="PNG"))
    with pytest.raises(UserError, match="characters outside the charset: 漢"):
        import_crops(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- CLI, end to end


def test_cli_trdg_to_lmdb(tmp_path):
    src = tmp_path / "trdg"
    src.mkdir()
    words = ["손글씨", "인식 모델", "EasyOCR"]
    for i, w in enumerate(words):
        (src / trdg_file_name(w, i, 0)).write_bytes(word_image(w))
    r = run_cli("data", "convert-trdg", str(src), str(tmp_path / "gt"))
    assert r.returncode == 0, r.stderr
    assert "3 samples written, 0 skipped" in r.stdout
    r = run_cli("data", "lmdb", str(tmp_path / "gt"), str(tmp_path / "db"))
    assert r.returncode == 0, r.stderr
    assert LmdbReader(tmp_path / "db").labels() == words
    r = run_cli("data", "convert-trdg", str(src), str(tmp_path / "gt"))
    assert r.returncode == 2 and r.stderr.strip().endswith("already exists (use --overwrite to replace it)")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["convert-trdg", "{t}/nowhere", "{t}/out"], "nowhere: no such directory"),
        (["import", "{t}/nowhere", "{t}/out"], "nowhere: no such directory"),
        (["import", "{t}", "{t}/out", "--charset", "klingon_g2"], "unknown charset 'klingon_g2'"),
    ],
)
def test_cli_one_line_errors(tmp_path, args, message):
    r = run_cli("data", *[a.format(t=tmp_path) for a in args])
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocrtune: error:") and message in lines[0]


def test_import_disk_full(tmp_path):

    src = tmp_path / "crops"
    (src / "images").mkdir(parents=True)
    small = word_image("small", fmt="PNG")
    noise = np.random.default_rng(0).integers(0, 256, (400, 1200), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    big = buf.getvalue()
    for i in range(6):
        (src / f"images/{i}.png").write_bytes(big if i == 4 else small)
    (src / "gt.txt").write_text("".join(f"images/{i}.png\t글씨\n" for i in range(6)), encoding="utf-8")
    limit = len(big) // 2

    def cap():
        signal.signal(
            signal.SIGXFSZ, signal.SIG_IGN
        )  # a write past the cap fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "ocrtune", "data", "import", str(src), str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        preexec_fn=cap,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk full (or failing) while writing" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops"]

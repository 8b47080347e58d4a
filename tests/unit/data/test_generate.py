"""``ocrtune data generate`` end to end with real fonts: split, card, determinism and every bad input."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from support.cli import run_cli, sigint_as_in_a_terminal

from ocrtune.charsets import load_charset
from ocrtune.config import DataConfig
from ocrtune.data.card import content_hash
from ocrtune.data.font_fetch import fetch_fonts
from ocrtune.data.fonts import face_of, load_fonts
from ocrtune.data.generate import generate
from ocrtune.data.glyphs import drawn_chars
from ocrtune.data.gt_layout import read_gt, read_samples
from ocrtune.errors import UserError

FEW = ("NanumPen", "NanumPenScript", "Gaegu", "HiMelody")


@pytest.fixture(scope="module")
def fonts_dir(tmp_path_factory) -> Path:
    """Four of the fetched fonts (Gaegu draws only part of korean_g2) as a user fonts dir: fast workers."""
    try:
        fetched = load_fonts()
    except UserError:
        fetched = fetch_fonts()  # what `make test` does first; cached afterwards
    pick = [f for f in fetched if f.name in FEW] or fetched[:4]
    d = tmp_path_factory.mktemp("fonts")
    fonts = fetch_fonts(d, add=[f.path for f in pick], use_apt=False, use_npm=False)
    charset = load_charset("korean_g2")
    for f in fonts:  # warm the glyph cache (the disk-full test must not be the first to write it)
        drawn_chars(f, charset)
    return d


def _gen(out: Path, fonts_dir: Path, *extra: str, timeout: float = 300):
    return run_cli(
        "data",
        "generate",
        "--out",
        str(out),
        "--fonts-dir",
        str(fonts_dir),
        "--quiet",
        *extra,
        timeout=timeout,
    )


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


SMALL = ("--count", "160", "--val", "24", "--test", "24", "--test-fonts", "1", "--coverage-min", "0")


def test_generate_split_card_and_worker_independence(fonts_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = _gen(a, fonts_dir, *SMALL, "--seed", "3", "--workers", "1")
    assert r1.returncode == 0, r1.stderr
    r2 = _gen(b, fonts_dir, *SMALL, "--seed", "3", "--workers", "2")
    assert r2.returncode == 0, r2.stderr
    # same seed, different worker count: byte-identical datasets
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys()
    differ = [k for k in fa if fa[k] != fb[k] and k not in ("card.json", "card.md")]
    assert differ == []
    card = json.loads((a / "card.json").read_text("utf-8"))
    assert card["content_sha256"] == json.loads((b / "card.json").read_text("utf-8"))["content_sha256"]
    assert card["content_sha256"] == content_hash(a, ["train", "val", "test"])

    gt = {s: read_gt(a / s) for s in ("train", "val", "test")}
    side = {s: read_samples(a / s) for s in gt}
    assert {s: len(v) for s, v in gt.items()} == {"train": 160, "val": 24, "test": 24} == card["counts"]
    for s in gt:  # every listed image exists and has the right height
        for rel, _ in gt[s][:: max(1, len(gt[s]) // 10)]:
            with Image.open(a / s / rel) as im:
                assert im.height == 64 and im.format == "JPEG"
    # split by font: test fonts never drawn in train or val
    fonts = {s: {side[s][rel][0] for rel, _ in gt[s]} for s in gt}
    assert fonts["test"] and not fonts["test"] & (fonts["train"] | fonts["val"])
    split = json.loads((a / "split.json").read_text("utf-8"))
    assert set(split["test_fonts_held_out"]) == fonts["test"]
    # ... and by typeface: one hand shipped twice (Debian's and npm's Nanum Pen) stays on one side
    face = {f.name: face_of(f) for f in load_fonts(fonts_dir)}
    assert face["NanumPen"] == face["NanumPenScript"]
    held_out = {face[n] for n in fonts["test"]}
    assert not held_out & {face[n] for n in fonts["train"] | fonts["val"]}
    # split by word: no test text is a train text
    texts = {s: {label for _, label in gt[s]} for s in gt}
    assert not texts["test"] & texts["train"] and not texts["test"] & texts["val"]
    assert set(split["overlap"].values()) == {0}
    # the card agrees with the files
    assert card["fonts"]["train"] == dict(Counter(side["train"][rel][0] for rel, _ in gt["train"]))
    hist = Counter("".join(label for s in gt for _, label in gt[s]))
    assert card["char_histogram"] == dict(hist)
    assert card["coverage"]["all"]["present"] == len(set(hist) & set(load_charset("korean_g2")))
    assert card["generation"]["config"]["seed"] == 3 and card["generation"]["backend"] == "pillow"
    assert {f["name"] for f in card["generation"]["fonts"]} == set(FEW)
    with Image.open(a / "montage.png") as m:
        assert m.format == "PNG" and m.width == 1200 and m.height > 64
    assert card["content_sha256"] in (a / "card.md").read_text("utf-8")
    # another seed, another dataset
    c = tmp_path / "c"
    assert _gen(c, fonts_dir, *SMALL, "--seed", "4").returncode == 0
    assert json.loads((c / "card.json").read_text("utf-8"))["content_sha256"] != card["content_sha256"]


def test_coverage_every_character_k_times(fonts_dir, tmp_path):
    cfg = DataConfig(train_count=420, val_count=0, test_count=0, coverage_min=1, wordfreq_top=300, workers=2)
    card = generate(cfg, tmp_path / "cov", fonts_dir=fonts_dir)
    charset = load_charset("korean_g2")
    uncoverable = card["generation"]["plan"]["uncoverable_chars"]
    counts = Counter("".join(label for _, label in read_gt(tmp_path / "cov" / "train")))
    assert [c for c in charset if counts[c] < 1 and c not in uncoverable] == []
    assert card["coverage"]["train"]["at_least_k"] == len(charset) - len(uncoverable)
    sources = card["sources"]["train"]
    assert sources["coverage"] > 100 and sum(sources.values()) == 420


def test_coverage_strings_are_the_same_in_every_process(fonts_dir, tmp_path):
    """Same seed, same dataset, whatever the interpreter's string-hash seed (set order differs by process)."""
    args = ("--count", "420", "--val", "0", "--test", "0", "--coverage-min", "1", "--wordfreq-top", "300")
    for hash_seed in ("1", "2"):
        r = run_cli(
            "data", "generate", "--out", str(tmp_path / hash_seed), "--fonts-dir", str(fonts_dir), "--quiet",
            *args, env={"PYTHONHASHSEED": hash_seed},
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
    first, second = (read_gt(tmp_path / seed / "train") for seed in ("1", "2"))
    assert first == second


def test_too_small_for_coverage_is_a_user_error(fonts_dir, tmp_path):
    r = _gen(tmp_path / "o", fonts_dir, "--count", "50", "--val", "0", "--test", "0", "--coverage-min", "3")
    assert r.returncode == 2 and "too small" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_existing_output_refused_without_overwrite(fonts_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = _gen(out, fonts_dir, *SMALL)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ocrtune: error: {out} already exists (use --overwrite to replace it)"
    ]
    assert (out / "keep.txt").read_text() == "mine"
    r = _gen(out, fonts_dir, *SMALL, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (out / "keep.txt").exists() and (out / "train" / "gt.txt").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_bad_word_file_and_too_few_fonts(fonts_dir, tmp_path):
    words = tmp_path / "words.txt"
    words.write_bytes("사과\n".encode() + "김치\n".encode("cp949"))
    r = _gen(tmp_path / "o", fonts_dir, *SMALL, "--words", str(words))
    assert r.returncode == 2 and "line 2 is not UTF-8" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    words.write_text("\n\n", encoding="utf-8")
    r = _gen(tmp_path / "o", fonts_dir, *SMALL, "--words", str(words))
    assert r.returncode == 2 and "no entries" in r.stderr
    r = _gen(
        tmp_path / "o", fonts_dir, "--count", "20", "--test", "5", "--test-fonts", "4", "--coverage-min", "0"
    )
    assert r.returncode == 2 and "3 usable typeface(s) cannot hold out 4" in r.stderr
    assert not (tmp_path / "o").exists()


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupt_leaves_nothing_that_looks_complete(fonts_dir, tmp_path, how):
    out = tmp_path / "out"
    args = ["data", "generate", "--out", str(out), "--fonts-dir", str(fonts_dir), "--quiet", "--workers", "2"]
    args += ["--count", "20000", "--val", "0", "--test", "0", "--coverage-min", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrtune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=sigint_as_in_a_terminal,
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # wait until images are being written
            partial = list(tmp_path.glob(".out.partial-*/train/images"))
            if partial and sum(1 for _ in partial[0].iterdir()) > 100:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            pytest.fail("generation never started writing images")
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        else:
            proc.send_signal(signal.SIGTERM)  # what Kubernetes does to a pod's main process
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert _leftovers(tmp_path) == []


def test_disk_full_is_one_line_and_leaves_nothing(fonts_dir, tmp_path):
    def small_files():  # every file the run writes is limited to 1.5 kB: an image write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))

    out = tmp_path / "out"
    args = ["data", "generate", "--out", str(out), "--fonts-dir", str(fonts_dir), "--quiet", *SMALL]
    r = subprocess.run(
        [sys.executable, "-m", "ocrtune", *args],
        capture_output=True,
        text=True,
        preexec_fn=small_files,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocrtune: error: disk full"), r.stderr
    assert _leftovers(tmp_path) == []


def test_trdg_backend_small_run(fonts_dir, tmp_path):
    from ocrtune.data.trdg_backend import ensure_trdg

    try:
        ensure_trdg()
    except UserError as exc:
        pytest.skip(f"the trdg 1.8.0 venv cannot be created here: {exc}")
    out = tmp_path / "trdg"
    r = _gen(
        out,
        fonts_dir,
        "--backend",
        "trdg",
        "--count",
        "30",
        "--val",
        "4",
        "--test",
        "6",
        "--test-fonts",
        "1",
        "--coverage-min",
        "0",
    )
    assert r.returncode == 0, r.stderr
    card = json.loads((out / "card.json").read_text("utf-8"))
    assert card["generation"]["backend"] == "trdg"
    gt = {s: read_gt(out / s) for s in ("train", "val", "test")}
    assert sum(map(len, gt.values())) == 40 - json.loads((out / "split.json").read_text())["render_failures"]
    side = {s: read_samples(out / s) for s in gt}
    test_fonts = {side["test"][rel][0] for rel, _ in gt["test"]}
    assert test_fonts and not test_fonts & {side["train"][rel][0] for rel, _ in gt["train"]}
    for rel, _ in gt["train"][:5]:
        with Image.open(out / "train" / rel) as im:
            assert im.height == 64 and im.format == "JPEG"


def test_empty_split_has_no_dir_and_lmdb_reads_the_output(fonts_dir, tmp_path):
    out, db = tmp_path / "data", tmp_path / "lmdb"
    r = _gen(
        out,
        fonts_dir,
        "--count",
        "40",
        "--val",
        "0",
        "--test",
        "8",
        "--test-fonts",
        "1",
        "--coverage-min",
        "0",
    )
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["test", "train"]
    r = run_cli("data", "lmdb", str(out), str(db))
    assert r.returncode == 0, r.stderr
    from ocrtune.data.lmdb import LmdbReader

    for split in ("train", "test"):
        gt, side = read_gt(out / split), read_samples(out / split)
        reader = LmdbReader(db / split)
        try:
            assert reader.labels() == [label for _, label in gt]
            assert [reader.font(i) for i in range(len(reader))] == [side[rel][0] for rel, _ in gt]
            assert reader.get(0)[0] == (out / split / gt[0][0]).read_bytes()
        finally:
            reader.close()

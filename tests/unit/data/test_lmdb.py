"""LMDB in DTRB's key format: read back exactly as DTRB reads it, grown maps, skips, and no half-written DST."""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.cli import REPO, run_cli, sigint_as_in_a_terminal

from ocrtune.data.lmdb import LmdbReader, write_lmdb
from ocrtune.errors import UserError

LABELS = ["안녕하세요", "한국어 손글씨", "ABC 123", "값", "읽기 쉬운 글씨", "2024-11-26", "서울특별시"]


def make_layout(root: Path, n: int, size=(160, 48), noise=False, fmt="JPEG", fonts=True, seed=0) -> list:
    """A real gt.txt layout: n encoded images, Hangul labels, and a samples.tsv sidecar."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    gt, side, out = [], [], []
    ext = ".jpg" if fmt == "JPEG" else ".png"
    for i in range(n):
        if noise:
            im = Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8))
        else:
            im = Image.new("L", size, 255)
            ImageDraw.Draw(im).text((4, 10), f"s{i}", fill=0)
        rel = f"images/image_{i:06d}{ext}"
        im.save(root / rel, format=fmt)
        label = f"{LABELS[i % len(LABELS)]} {i}"
        gt.append(f"{rel}\t{label}\n")
        side.append(f"{rel}\tFont{i % 3}\tcoverage\n")
        out.append((rel, label))
    (root / "gt.txt").write_text("".join(gt), encoding="utf-8")
    if fonts:
        (root / "samples.tsv").write_text("".join(side), encoding="utf-8")
    return out


def dtrb_read(root: Path) -> list[tuple[str, Image.Image, bytes]]:
    """What DTRB's LmdbDataset does: same open flags, int(num-samples), 1-based keys, UTF-8, PIL from bytes."""
    env = lmdb.open(str(root), max_readers=32, readonly=True, lock=False, readahead=False, meminit=False)
    out = []
    with env.begin(write=False) as txn:
        n = int(txn.get(b"num-samples"))
        for index in range(1, n + 1):
            label = txn.get(b"label-%09d" % index).decode("utf-8")
            imgbuf = txn.get(b"image-%09d" % index)
            buf = io.BytesIO()
            buf.write(imgbuf)
            buf.seek(0)
            out.append((label, Image.open(buf).convert("L"), imgbuf))
        assert txn.get(b"label-%09d" % 0) is None  # keys start at 1
        assert txn.get(b"label-%09d" % (n + 1)) is None
    env.close()
    return out


def test_dtrb_key_format_read_back(tmp_path):
    entries = make_layout(tmp_path / "src", 30)
    stats = write_lmdb(tmp_path / "src", tmp_path / "db")
    assert stats["written"] == 30 and stats["skipped_total"] == 0
    got = dtrb_read(tmp_path / "db")
    assert [g[0] for g in got] == [label for _, label in entries]
    for (rel, _), (_, img, raw) in zip(entries, got, strict=True):
        assert raw == (tmp_path / "src" / rel).read_bytes()  # the encoded file, byte for byte
        assert img.size == (160, 48)
    assert json.loads((tmp_path / "db" / "lmdb.json").read_text())["fonts"] == {
        "Font0": 10,
        "Font1": 10,
        "Font2": 10,
    }

    r = LmdbReader(tmp_path / "db")
    assert len(r) == 30
    img, label = r.get(0)
    assert label == entries[0][1] == r.label(0) and img == got[0][2]
    assert r.font(4) == "Font1"
    assert r.labels() == [label for _, label in entries]
    with pytest.raises(IndexError):
        r.get(30)
    with pytest.raises(IndexError):
        r.label(-1)
    r.close()


def test_no_sidecar_no_font_keys(tmp_path):
    make_layout(tmp_path / "src", 3, fonts=False)
    write_lmdb(tmp_path / "src", tmp_path / "db")
    r = LmdbReader(tmp_path / "db")
    assert r.font(0) is None and len(r) == 3


def test_map_size_grows(tmp_path):
    # 40 noise PNGs of 256x64 are ~16 KB each: 640 KB into a map that starts at 128 KB
    entries = make_layout(tmp_path / "src", 40, size=(256, 64), noise=True, fmt="PNG")
    total = sum((tmp_path / "src" / rel).stat().st_size for rel, _ in entries)
    assert total > 4 * (128 << 10)
    stats = write_lmdb(tmp_path / "src", tmp_path / "db", map_size=128 << 10)
    assert stats["map_growths"] >= 2 and stats["map_size"] >= total
    got = dtrb_read(tmp_path / "db")
    assert [g[2] for g in got] == [(tmp_path / "src" / rel).read_bytes() for rel, _ in entries]


def test_bad_samples_skipped_and_counted(tmp_path):
    src = tmp_path / "src"
    entries = make_layout(src, 8)
    good = (src / entries[0][0]).read_bytes()
    (src / entries[1][0]).write_bytes(b"this is not an image")
    (src / entries[2][0]).write_bytes(good[: len(good) // 2])  # truncated JPEG: header fine, data cut
    (src / entries[3][0]).write_bytes(b"")
    lines = (src / "gt.txt").read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].split("\t")[0] + "\t"  # empty label
    lines.append("images/not_there.jpg\t없음")
    (src / "gt.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    stats = write_lmdb(src, tmp_path / "db")
    assert stats["skipped"] == {"image unreadable": 3, "empty label": 1, "image missing": 1}
    assert stats["written"] == 4
    assert [g[0] for g in dtrb_read(tmp_path / "db")] == [entries[i][1] for i in (0, 5, 6, 7)]
    # without verification the unreadable ones get in: the check is what keeps them out
    assert write_lmdb(src, tmp_path / "db2", verify=False)["written"] == 7


def test_splits_become_sub_databases(tmp_path):
    make_layout(tmp_path / "out" / "train", 12)
    make_layout(tmp_path / "out" / "val", 4, seed=1)
    (tmp_path / "out" / "split.json").write_text("{}")
    stats = write_lmdb(tmp_path / "out", tmp_path / "db")
    assert stats["written"] == 16 and set(stats["splits"]) == {"train", "val"}
    assert len(LmdbReader(tmp_path / "db" / "train")) == 12
    assert len(dtrb_read(tmp_path / "db" / "val")) == 4
    assert json.loads((tmp_path / "db" / "lmdb.json").read_text())["splits"]["val"]["written"] == 4


def test_reader_in_dataloader_workers(tmp_path):
    import torch.utils.data as tud

    entries = make_layout(tmp_path / "src", 20)
    write_lmdb(tmp_path / "src", tmp_path / "db")
    reader = LmdbReader(tmp_path / "db")
    reader.labels()  # the parent has an open environment before the workers fork

    class Labels(tud.Dataset):
        def __len__(self):
            return len(reader)

        def __getitem__(self, i):
            img, label = reader.get(i)
            return f"{os.getpid()}|{label}|{Image.open(io.BytesIO(img)).size[0]}"

    rows = list(tud.DataLoader(Labels(), batch_size=None, num_workers=2))
    assert [r.split("|")[1] for r in rows] == [label for _, label in entries]
    assert os.getpid() not in {int(r.split("|")[0]) for r in rows}
    clone = pickle.loads(pickle.dumps(reader))  # spawn-style workers get a reader that reopens
    assert clone.label(19) == entries[19][1]


def test_not_an_lmdb(tmp_path):
    with pytest.raises(UserError, match="not an LMDB directory"):
        LmdbReader(tmp_path)
    env = lmdb.open(str(tmp_path / "x"))
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    with pytest.raises(UserError, match="num-samples"):
        LmdbReader(tmp_path / "x")


def test_cli_refuses_existing_dst_and_overwrites(tmp_path):
    old_entries = make_layout(tmp_path / "old", 3, seed=1)
    write_lmdb(tmp_path / "old", tmp_path / "db")
    old = LmdbReader(tmp_path / "db")
    make_layout(tmp_path / "src", 5)
    r = run_cli("data", "lmdb", str(tmp_path / "src"), str(tmp_path / "db"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ocrtune: error: {tmp_path / 'db'} already exists (use --overwrite to replace it)"
    ]
    r = run_cli("data", "lmdb", str(tmp_path / "src"), str(tmp_path / "db"), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert "5 samples written, 0 skipped" in r.stdout
    assert len(LmdbReader(tmp_path / "db")) == 5  # a new reader sees the new database...
    assert len(old) == 3 and old.label(2) == old_entries[2][1]  # ...one opened before keeps the old one
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no gt.txt, nor subdirectories"),
        (
            lambda d: (d / "gt.txt").write_bytes(b"images/a.jpg\tok\nimages/b.jpg\t\xed\x95\n"),
            "gt.txt:2: not UTF-8",
        ),
        (lambda d: (d / "gt.txt").write_text("images/a.jpg label\n"), "gt.txt:1: expected 'path<TAB>label'"),
    ],
)
def test_cli_one_line_errors(tmp_path, setup, message):
    (tmp_path / "src").mkdir()
    setup(tmp_path / "src")
    r = run_cli("data", "lmdb", str(tmp_path / "src"), str(tmp_path / "db"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("ocrtune: error:")
    assert not (tmp_path / "db").exists()


def _big_layout(root: Path, n: int) -> None:
    """n samples that reuse 20 distinct images: a long write from a small source."""
    make_layout(root, 20, size=(256, 64), noise=True)
    rels = [f"images/image_{i % 20:06d}.jpg\t라벨 {i}\n" for i in range(n)]
    (root / "gt.txt").write_text("".join(rels), encoding="utf-8")


def _partials(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(".db.partial-")]


def _start_lmdb(src: Path, dst: Path, **kw) -> subprocess.Popen:
    kw.setdefault("preexec_fn", sigint_as_in_a_terminal)
    return subprocess.Popen(
        [sys.executable, "-m", "ocrtune", "data", "lmdb", str(src), str(dst)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for_data(parent: Path, proc: subprocess.Popen, min_bytes: int = 1 << 20) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        mdbs = [p / "data.mdb" for p in _partials(parent) if (p / "data.mdb").exists()]
        if mdbs and mdbs[0].stat().st_size >= min_bytes:
            return
        assert proc.poll() is None, "the write finished before it could be interrupted"
        time.sleep(0.02)
    raise AssertionError("no data written within 60 s")


def test_kill_9_mid_write_leaves_no_dst(tmp_path):
    _big_layout(tmp_path / "src", 40000)
    proc = _start_lmdb(tmp_path / "src", tmp_path / "db")
    _wait_for_data(tmp_path, proc)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "db").exists()
    assert len(_partials(tmp_path)) == 1  # the dead writer's temp dir, hidden, never taken for DST
    # the next run removes it and writes a complete database
    _big_layout(tmp_path / "src2", 50)
    r = run_cli("data", "lmdb", str(tmp_path / "src2"), str(tmp_path / "db"))
    assert r.returncode == 0, r.stderr
    assert _partials(tmp_path) == [] and len(LmdbReader(tmp_path / "db")) == 50


def test_ctrl_c_mid_write_cleans_up(tmp_path):
    _big_layout(tmp_path / "src", 40000)
    proc = _start_lmdb(tmp_path / "src", tmp_path / "db")
    _wait_for_data(tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip() == "ocrtune: interrupted"
    assert not (tmp_path / "db").exists() and _partials(tmp_path) == []


def test_disk_full_mid_write(tmp_path):
    _big_layout(tmp_path / "src", 2000)  # ~ 20 MB of LMDB against a 4 MB file size limit

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))

    proc = _start_lmdb(tmp_path / "src", tmp_path / "db", preexec_fn=limit)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"ocrtune: error: disk full (or failing) while writing {tmp_path / 'db'}"
    )
    assert not (tmp_path / "db").exists() and _partials(tmp_path) == []

"""ocrtune.files: a file or directory is complete or absent, whatever interrupts its writer; one cache rule."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ocrtune.data.fonts import default_fonts_dir
from ocrtune.data.glyphs import default_cache_dir
from ocrtune.data.trdg_backend import default_venv
from ocrtune.errors import UserError
from ocrtune.files import (
    atomic_open,
    atomic_path,
    cache_dir,
    clean_stale,
    copy_file,
    disk_full_error,
    file_digest,
    sha256_file,
    staged_dir,
    write_text,
)
from ocrtune.model.pretrained import default_models_dir


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError), atomic_open(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and _siblings(target) == ["a.json"]


def test_atomic_path_renames_on_success_with_the_mode(tmp_path):
    target = tmp_path / "sub" / "w.pth"
    with atomic_path(target, mode=0o640) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".w.pth.")
        tmp.write_bytes(b"weights")
        assert not target.exists()
    assert target.read_bytes() == b"weights" and (target.stat().st_mode & 0o777) == 0o640
    assert _siblings(target) == ["w.pth"]


def test_copy_file_and_digests(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 1000)
    dst = copy_file(src, tmp_path / "dst.bin")
    assert dst.read_bytes() == src.read_bytes()
    assert sha256_file(dst) == hashlib.sha256(b"x" * 1000).hexdigest()
    assert file_digest(dst, "md5") == hashlib.md5(b"x" * 1000).hexdigest()


def test_staged_dir_publishes_only_when_complete(tmp_path):
    dst = tmp_path / "dataset"
    with pytest.raises(RuntimeError), staged_dir(dst) as tmp:
        (tmp / "gt.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert not dst.exists() and list(tmp_path.iterdir()) == []
    with staged_dir(dst) as tmp:
        (tmp / "gt.txt").write_text("v1")
    assert (dst / "gt.txt").read_text() == "v1"


def test_staged_dir_replaces_only_with_overwrite(tmp_path):
    dst = tmp_path / "export"
    with staged_dir(dst) as tmp:
        (tmp / "custom.pth").write_text("v1")
    with pytest.raises(UserError, match="already exists"), staged_dir(dst):
        pass
    with pytest.raises(RuntimeError), staged_dir(dst, overwrite=True) as tmp:
        (tmp / "custom.pth").write_text("v2-half")
        raise RuntimeError("interrupted")
    assert (dst / "custom.pth").read_text() == "v1"  # the old one stays until the new one is whole
    with staged_dir(dst, overwrite=True) as tmp:
        (tmp / "custom.pth").write_text("v2")
    assert (dst / "custom.pth").read_text() == "v2" and _siblings(dst) == ["export"]


def test_staged_dir_turns_a_full_disk_into_one_line(tmp_path):
    dst = tmp_path / "lmdb"
    with pytest.raises(UserError, match="disk full") as exc, staged_dir(dst):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "\n" not in str(exc.value) and not dst.exists() and list(tmp_path.iterdir()) == []
    assert "nothing was written" in str(disk_full_error(dst, OSError(errno.ENOSPC, "x")))


def test_clean_stale_removes_only_dead_writers_leftovers(tmp_path):
    dst = tmp_path / "data"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".data.partial-{int(dead.stdout)}-0badc0de"
    live = tmp_path / f".data.partial-{os.getpid()}-0badc0de"
    stale.mkdir()
    live.mkdir()
    assert clean_stale(dst) == [stale]
    assert live.exists() and not stale.exists()


@pytest.mark.parametrize(
    "resolver, name, env",
    [
        (default_fonts_dir, "fonts", "OCRTUNE_FONTS_DIR"),
        (default_cache_dir, "glyphs", "OCRTUNE_GLYPHS_CACHE"),
        (default_models_dir, "models", "OCRTUNE_MODELS_DIR"),
        (default_venv, "trdg-venv", "OCRTUNE_TRDG_VENV"),
    ],
)
def test_every_cache_follows_one_rule(monkeypatch, tmp_path, resolver, name, env):
    monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolver() == cache_dir(name, env) == tmp_path / "xdg" / "ocrtune" / name
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert resolver() == Path.home() / ".cache" / "ocrtune" / name
    monkeypatch.setenv(env, str(tmp_path / "mine"))
    assert resolver() == tmp_path / "mine"

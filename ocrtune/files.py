"""Files that are complete or absent: the one write-to-temp-then-rename, staged directories, digests, caches.

Every writer in ocrtune that a crash, a Ctrl-C or a full disk could interrupt writes beside its target under a
dot-name and renames when complete, so a reader (a later step, a resumed run, KFP's cache) never sees half a
file. ``atomic_path`` is the primitive; the other writers are built on it. ``staged_dir`` does the same for a
directory (a dataset, an LMDB, an export), replacing an old one only once the new one is whole.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ocrtune.errors import UserError

DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
CACHE_ROOT_ENV = "XDG_CACHE_HOME"


# ---- single files ------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp", mode: int | None = None) -> Iterator[Path]:
    """A temp path beside ``path`` for any writer (torch.save, savefig, a download); renamed onto ``path``
    when the block completes, removed when it fails. ``mode`` sets the permissions before the rename
    (``mkstemp`` creates 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: int | None = 0o644) -> Iterator[IO[bytes]]:
    """A binary file object whose contents reach ``path`` only once written, flushed and fsync'ed."""
    with atomic_path(path, mode=mode) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_bytes(path: str | Path, data: bytes, mode: int | None = 0o644) -> Path:
    with atomic_open(path, mode) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, mode: int | None = 0o644) -> Path:
    return write_bytes(path, text.encode("utf-8"), mode)


def copy_file(src: str | Path, dst: str | Path, mode: int | None = 0o644) -> Path:
    with atomic_path(dst, mode=mode) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


# ---- directories ---------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(dst: Path) -> list[Path]:
    """Remove temp dirs beside DST left by a writer that was killed (its PID is gone)."""
    removed = []
    for p in dst.parent.glob(f".{dst.name}.*-*"):
        m = re.fullmatch(rf"\.{re.escape(dst.name)}\.(?:partial|old)-(\d+)-[0-9a-f]+", p.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def disk_full_error(dst: Path, exc: BaseException) -> UserError:
    return UserError(f"disk full (or failing) while writing {dst} ({exc}); nothing was written there")


@contextlib.contextmanager
def staged_dir(dst: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A fresh temp dir beside DST; renamed to DST when the block completes, removed when it fails.

    DST must not exist unless ``overwrite``; an existing DST is replaced only once the new one is complete.
    A disk-full error becomes a one-line UserError.
    """
    dst = Path(os.path.abspath(dst))
    if dst.exists() and not overwrite:
        raise UserError(f"{dst} already exists (use --overwrite to replace it)")
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst} exists and is not a directory")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(dst)
        tmp = dst.parent / f".{dst.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise disk_full_error(dst, exc) from None
        raise UserError(f"cannot create {dst}: {exc.strerror}") from None
    try:
        yield tmp
        _publish(tmp, dst, overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in DISK_FULL:
            raise disk_full_error(dst, exc) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, dst: Path, overwrite: bool) -> None:
    if not dst.exists():
        os.rename(tmp, dst)
        return
    if not overwrite:
        raise UserError(f"{dst} appeared while writing (use --overwrite to replace it)")
    old = dst.parent / f".{dst.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
    os.rename(dst, old)
    try:
        os.rename(tmp, dst)
    except BaseException:
        os.rename(old, dst)  # the previous DST stays in place
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---- digests and caches ----------------------------------------------------------------------------------
def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")


def cache_dir(name: str, env: str | None = None) -> Path:
    """Where ocrtune caches ``name`` (fonts, glyphs, models, the trdg venv): ``$env`` when that variable is
    set, else ``${XDG_CACHE_HOME:-~/.cache}/ocrtune/<name>``. Not created here."""
    if env and os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    root = os.environ.get(CACHE_ROOT_ENV) or str(Path.home() / ".cache")
    return Path(root) / "ocrtune" / name

"""gt.txt layout -> LMDB in DTRB's key format, so DTRB's and EasyOCR's own trainers read our data too.

Keys (1-based): ``num-samples`` (ASCII int), ``image-%09d`` (the encoded file bytes), ``label-%09d`` (UTF-8),
plus ``font-%09d`` (UTF-8) when the layout has a samples.tsv. The map starts small and doubles when full
instead of reserving DTRB's 1 TB; the database is written in a temp dir and renamed when complete.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections import Counter
from pathlib import Path

import lmdb
from tqdm import tqdm

from ocrtune.data.gt_layout import GT_FILE, image_info, read_gt, read_samples
from ocrtune.errors import UserError
from ocrtune.files import DISK_FULL, disk_full_error, staged_dir

INITIAL_MAP_SIZE = 64 << 20
BATCH_SAMPLES = 1000
BATCH_BYTES = 32 << 20
INFO_FILE = "lmdb.json"


def image_key(i: int) -> bytes:
    return b"image-%09d" % i


def label_key(i: int) -> bytes:
    return b"label-%09d" % i


def font_key(i: int) -> bytes:
    return b"font-%09d" % i


def find_splits(src: Path) -> dict[str, Path]:
    """{"": SRC} for one layout, else {name: SRC/name} for each subdirectory holding a gt.txt."""
    if (src / GT_FILE).is_file():
        return {"": src}
    if not src.is_dir():
        raise UserError(f"{src}: no such directory")
    splits = {p.name: p for p in sorted(src.iterdir()) if p.is_dir() and (p / GT_FILE).is_file()}
    if not splits:
        raise UserError(f"{src}: no {GT_FILE}, nor subdirectories (train/val/test) that hold one")
    return splits


class _Writer:
    """Batches puts into transactions; a full map is doubled and the batch retried.

    Keys given in increasing order go in with MDB_APPEND, which fills B-tree pages instead of splitting
    them in half: interleaved image/label puts leave pages half empty and the database ~2x the images.
    """

    def __init__(self, path: Path, map_size: int):
        self.env = lmdb.open(str(path), map_size=map_size, subdir=True, sync=False, metasync=False)
        self.batch: list[tuple[bytes, bytes, bool]] = []
        self.bytes = 0
        self.growths = 0

    def put(self, key: bytes, value: bytes, append: bool = False) -> None:
        self.batch.append((key, value, append))
        self.bytes += len(value)
        if len(self.batch) >= BATCH_SAMPLES or self.bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        while self.batch:
            try:
                with self.env.begin(write=True) as txn:
                    for k, v, a in self.batch:
                        txn.put(k, v, append=a)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                self.growths += 1
                continue
            self.batch, self.bytes = [], 0

    def close(self) -> int:
        self.flush()
        self.env.sync(True)
        size = self.env.info()["map_size"]
        self.env.close()
        return size


def _write_one(src: Path, out: Path, verify: bool, map_size: int, progress: bool) -> dict:
    entries = read_gt(src)
    fonts = read_samples(src)
    skipped: Counter[str] = Counter()
    per_font: Counter[str] = Counter()
    out.mkdir(exist_ok=True)
    w = _Writer(out, map_size)
    n = 0
    labels: list[bytes] = []
    font_of: dict[int, bytes] = {}
    try:
        # keys sort font- < image- < label- < num-samples: images and labels go in as two appended runs
        for rel, label in tqdm(entries, desc=src.name, unit="img", disable=not progress, leave=False):
            if label == "":
                skipped["empty label"] += 1
                continue
            try:
                data = (src / rel).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                skipped["image missing"] += 1
                continue
            if verify and image_info(data) is None:
                skipped["image unreadable"] += 1
                continue
            n += 1
            w.put(image_key(n), data, append=True)
            labels.append(label.encode("utf-8"))
            if rel in fonts:
                font_of[n] = fonts[rel][0].encode("utf-8")
                per_font[fonts[rel][0]] += 1
        if n == 0:
            raise UserError(f"{src}: none of {len(entries)} samples could be written ({dict(skipped)})")
        for i, label_bytes in enumerate(labels, 1):
            w.put(label_key(i), label_bytes, append=True)
        w.put(b"num-samples", str(n).encode("ascii"), append=True)
        for i, font_bytes in font_of.items():
            w.put(font_key(i), font_bytes)
        final_size = w.close()
    except BaseException:
        w.env.close()
        raise
    stats = {
        "written": n,
        "skipped": dict(skipped),
        "skipped_total": skipped.total(),
        "source": os.path.abspath(src),
        "verified": verify,
        "map_size": final_size,
        "map_growths": w.growths,
        "fonts": dict(per_font.most_common()),
    }
    (out / INFO_FILE).write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def write_lmdb(
    src_dir: str | Path,
    dst_dir: str | Path,
    overwrite: bool = False,
    verify: bool = True,
    map_size: int = INITIAL_MAP_SIZE,
    progress: bool = False,
) -> dict:
    """Write SRC's gt.txt layout (or each of its train/val/test layouts) as DTRB-format LMDB at DST.

    Returns ``{"written", "skipped", "skipped_total", ...}``; with splits, the totals plus ``"splits"``.
    Samples with an empty label, a missing image or (``verify``) an image that does not decode are
    skipped and counted, never written.
    """
    src, dst = Path(src_dir), Path(dst_dir)
    splits = find_splits(src)
    for d in splits.values():  # every gt.txt is checked before anything is written
        read_gt(d)
        read_samples(d)
    results: dict[str, dict] = {}
    try:
        with staged_dir(dst, overwrite) as tmp:
            for name, d in splits.items():
                results[name] = _write_one(d, tmp / name if name else tmp, verify, map_size, progress)
            if "" in results:
                return results[""]
            skipped: Counter[str] = Counter()
            for r in results.values():
                skipped.update(r["skipped"])
            total = {
                "written": sum(r["written"] for r in results.values()),
                "skipped": dict(skipped),
                "skipped_total": skipped.total(),
                "splits": results,
            }
            (tmp / INFO_FILE).write_text(json.dumps(total, indent=2, ensure_ascii=False) + "\n", "utf-8")
            return total
    except lmdb.Error as exc:
        if isinstance(exc, lmdb.MapFullError) or not _is_disk_full(exc):
            raise
        raise disk_full_error(Path(os.path.abspath(dst)), exc) from None


def _is_disk_full(exc: lmdb.Error) -> bool:
    """LMDB reports a short write (what a filling disk gives first) as EIO, a refused one as its errno."""
    text = str(exc)
    return any(os.strerror(e) in text for e in (*DISK_FULL, errno.EIO))


# One environment per database per process: py-lmdb refuses to open the same file twice in a process,
# and one forked from a parent must not use the parent's. key -> [pid, environment, readers using it]
_ENVS: dict[tuple[str, int], list] = {}
_ENVS_LOCK = threading.Lock()


def _acquire(path: Path) -> tuple[tuple[str, int], lmdb.Environment]:
    key = (os.path.realpath(path), (path / "data.mdb").stat().st_ino)
    with _ENVS_LOCK:
        return key, _acquire_locked(path, key)


def _acquire_locked(path: Path, key: tuple[str, int]) -> lmdb.Environment:
    entry = _ENVS.get(key)
    if entry is not None and entry[0] == os.getpid():
        entry[2] += 1
        return entry[1]
    if entry is not None:
        entry[1].close()  # inherited through fork; readonly + lock=False makes closing it here safe
    env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=64)
    _ENVS[key] = [os.getpid(), env, 1]
    return env


def _release(key: tuple[str, int]) -> None:
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is not None and entry[0] == os.getpid():
            entry[2] -= 1
            if entry[2] <= 0:
                entry[1].close()
                del _ENVS[key]


class LmdbReader:
    """Random access to a DTRB-format LMDB; 0-based ``i`` reads key index ``i + 1``.

    The environment opens lazily in whichever process uses it (readonly, lock=False), so a reader can be
    handed to DataLoader worker processes, forked or spawned; readers of one database share it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise UserError(f"{self.path}: not an LMDB directory (no data.mdb)")
        self._env: lmdb.Environment | None = None
        self._key: tuple[str, int] | None = None
        self._pid: int | None = None
        raw = self._get(b"num-samples")
        try:
            self._n = int(raw)
        except (TypeError, ValueError):
            self.close()
            raise UserError(f"{self.path}: not a DTRB-format LMDB (no valid 'num-samples' key)") from None

    def _open(self) -> lmdb.Environment:
        if self._env is None or self._pid != os.getpid():
            self._key, self._env = _acquire(self.path)
            self._pid = os.getpid()
        return self._env

    def _get(self, key: bytes) -> bytes | None:
        with self._open().begin(buffers=False) as txn:
            return txn.get(key)

    def __len__(self) -> int:
        return self._n

    def _key_index(self, i: int) -> int:
        if not 0 <= i < self._n:
            raise IndexError(f"sample {i} out of range (0..{self._n - 1})")
        return i + 1

    def get(self, i: int) -> tuple[bytes, str]:
        k = self._key_index(i)
        with self._open().begin() as txn:
            return bytes(txn.get(image_key(k))), txn.get(label_key(k)).decode("utf-8")

    def label(self, i: int) -> str:
        return self._get(label_key(self._key_index(i))).decode("utf-8")

    def font(self, i: int) -> str | None:
        raw = self._get(font_key(self._key_index(i)))
        return None if raw is None else raw.decode("utf-8")

    def labels(self) -> list[str]:
        with self._open().begin() as txn:
            return [txn.get(label_key(k)).decode("utf-8") for k in range(1, self._n + 1)]

    def close(self) -> None:
        if self._env is not None and self._pid == os.getpid():
            _release(self._key)
        self._env = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_n": self._n, "_env": None, "_key": None, "_pid": None}

    def __enter__(self) -> LmdbReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

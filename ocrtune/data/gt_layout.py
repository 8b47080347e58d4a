"""The on-disk dataset layout every step exchanges: ``DIR/images/*`` + ``DIR/gt.txt`` (+ ``samples.tsv``).

It is the TRDG2DTRB layout DTRB's ``create_lmdb_dataset.py`` reads, so one reader validates it for all of
ocrtune. ``LayoutWriter`` appends to a staged directory (``ocrtune.files.staged_dir``), so every writer
(``ocrtune.data.importers``: trdg conversion, imports of real crops) publishes a complete directory or nothing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from PIL import Image

from ocrtune.errors import UserError

GT_FILE = "gt.txt"
SAMPLES_FILE = "samples.tsv"
IMAGES_DIR = "images"
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


# ---------------------------------------------------------------- reading the layout


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file; blank lines skipped; a non-UTF-8 line names itself."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.removesuffix(b"\r")
        if not raw.strip(b" "):
            continue
        try:
            yield n, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}:{n}: not UTF-8 (byte {exc.start} of the line)") from None


def check_relative(path: str, where: str, root: Path) -> str:
    """``path`` unless it is empty, absolute or climbs out of ``root`` (UserError naming ``where``)."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts:
        raise UserError(f"{where}: image path '{path}' must be relative and inside {root}")
    return path


def read_gt(dir: str | Path) -> list[tuple[str, str]]:
    """(relative image path, label) for every line of DIR/gt.txt, in file order.

    A line is ``path<TAB>label``; the label is kept as written (spaces included), may be empty (writers
    skip and count those), and cannot contain a tab. Errors name the file and the line.
    """
    root = Path(dir)
    gt = root / GT_FILE
    if not gt.is_file():
        raise UserError(f"{root}: no {GT_FILE} (expected lines 'images/image_000000.jpg<TAB>label')")
    out = []
    for n, line in text_lines(gt):
        where = f"{gt}:{n}"
        if "\t" not in line:
            raise UserError(f"{where}: expected 'path<TAB>label', found no tab")
        path, label = line.split("\t", 1)
        if "\t" in label:
            raise UserError(f"{where}: more than one tab (a label cannot contain a tab)")
        out.append((check_relative(path, where, root), label))
    if not out:
        raise UserError(f"{gt}: no samples in it")
    return out


def read_samples(dir: str | Path) -> dict[str, tuple[str, str]]:
    """The optional DIR/samples.tsv sidecar: relative image path -> (font name, word source); {} if absent."""
    root = Path(dir)
    path = root / SAMPLES_FILE
    if not path.is_file():
        return {}
    out = {}
    for n, line in text_lines(path):
        parts = line.split("\t")
        if len(parts) != 3:
            raise UserError(f"{path}:{n}: expected 'path<TAB>font<TAB>source', found {len(parts)} fields")
        out[check_relative(parts[0], f"{path}:{n}", root)] = (parts[1], parts[2])
    return out


def image_info(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) when the bytes really decode as a non-empty image, else None.

    JPEGs decode in draft mode (DCT scaling): every entropy-coded byte is still read, so a truncated or
    corrupt file fails, at a fraction of the cost of a full decode.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
            if fmt == "JPEG":
                im.draft("L", (max(1, w // 8), max(1, h // 8)))
            im.load()
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, struct.error... on bad data
        return None
    if w <= 0 or h <= 0:
        return None
    return fmt, w, h


def ext_for(fmt: str | None) -> str:
    """The file extension for a Pillow format name (``JPEG`` -> ``.jpg``)."""
    return _FORMAT_EXT.get(fmt or "", f".{(fmt or 'img').lower()}")


# ---------------------------------------------------------------- writing a directory completely or not at all


class LayoutWriter:
    """Appends images and labels to a staged dataset dir: ``images/image_%06d.<ext>``, gt.txt, samples.tsv."""

    def __init__(self, root: Path):
        self.root = root
        (root / IMAGES_DIR).mkdir()
        self._gt = open(root / GT_FILE, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
        self._samples: list[str] = []
        self.count = 0

    def add(
        self, data: bytes, ext: str, label: str, font: str | None = None, source: str | None = None
    ) -> str:
        rel = f"{IMAGES_DIR}/image_{self.count:06d}{ext}"
        (self.root / rel).write_bytes(data)
        self._gt.write(f"{rel}\t{label}\n")
        if font is not None or source is not None:
            self._samples.append(f"{rel}\t{font or ''}\t{source or ''}\n")
        self.count += 1
        return rel

    def close(self) -> None:
        self._gt.close()
        if self._samples:
            (self.root / SAMPLES_FILE).write_text("".join(self._samples), encoding="utf-8")

"""Importers into the gt.txt layout: trdg output, EasyOCR trainer's labels.csv and real labelled crops.

Each importer checks every label (NFC, no tab or newline, inside the charset) and every image (it really
decodes; an EXIF rotation is applied once), counts what it skipped and why, and publishes the dataset
directory complete or not at all (``ocrtune.files.staged_dir``). The layout itself is ``gt_layout``'s.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections import Counter
from pathlib import Path

from PIL import Image, ImageOps

from ocrtune.charsets import load_charset
from ocrtune.data.gt_layout import (
    GT_FILE,
    IMAGE_EXTS,
    LayoutWriter,
    check_relative,
    ext_for,
    image_info,
    read_gt,
    read_samples,
    text_lines,
)
from ocrtune.errors import UserError
from ocrtune.files import staged_dir

_EXIF_ORIENTATION = 0x0112


# ---------------------------------------------------------------- label checks shared by the importers


def clean_label(label: str) -> str:
    """NFC: labels written on macOS or by some tools hold decomposed jamo that no charset contains."""
    return unicodedata.normalize("NFC", label)


class Tally:
    """Counts of what was written and why samples were skipped."""

    def __init__(self) -> None:
        self.written = 0
        self.skipped: Counter[str] = Counter()
        self.normalized = 0
        self.rotated = 0
        self.bad_chars: Counter[str] = Counter()

    def as_dict(self) -> dict:
        out = {"written": self.written, "skipped": dict(self.skipped), "skipped_total": self.skipped.total()}
        out["labels_normalized"] = self.normalized
        out["rotated_by_exif"] = self.rotated
        if self.bad_chars:
            out["out_of_charset_chars"] = dict(self.bad_chars.most_common())
        return out


def _add_checked(
    w: LayoutWriter,
    tally: Tally,
    path: Path,
    label: str,
    allowed: set[str] | None,
    font: str | None = None,
    source: str | None = None,
    exif: bool = False,
) -> None:
    fixed = clean_label(label)
    tally.normalized += fixed != label
    if fixed == "":
        tally.skipped["empty label"] += 1
        return
    if "\t" in fixed or "\n" in fixed or "\r" in fixed:
        tally.skipped["label has a tab or newline"] += 1
        return
    if allowed is not None:
        bad = [c for c in fixed if c not in allowed]
        if bad:
            tally.skipped["label outside the charset"] += 1
            tally.bad_chars.update(bad)
            return
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        tally.skipped["image missing"] += 1
        return
    info = image_info(data)
    if info is None:
        tally.skipped["image unreadable"] += 1
        return
    if exif:
        data, info = _apply_exif_orientation(data, info, tally)
    w.add(data, ext_for(info[0]), fixed, font, source)
    tally.written += 1


def _apply_exif_orientation(data: bytes, info: tuple, tally: Tally) -> tuple[bytes, tuple]:
    """Phone crops may carry an EXIF rotation that Pillow (so EasyOCR and DTRB) ignores: apply it once."""
    with Image.open(io.BytesIO(data)) as im:
        if im.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
            return data, info
        rotated = ImageOps.exif_transpose(im)
        buf = io.BytesIO()
        rotated.save(buf, format="PNG")
    tally.rotated += 1
    return buf.getvalue(), ("PNG", rotated.width, rotated.height)


# ---------------------------------------------------------------- trdg output -> layout


def _trdg_entries(src: Path, name_format: int) -> tuple[list[tuple[Path, str]], Counter]:
    """(image file, label) in trdg's generation order, and counts of names that could not be parsed."""
    bad: Counter[str] = Counter()
    if name_format == 2:
        labels = src / "labels.txt"
        if not labels.is_file():
            raise UserError(f"{src}: no labels.txt (trdg -na 2 writes one next to the images)")
        entries = []
        for n, line in text_lines(labels):
            name, sep, label = line.partition(" ")
            if not sep or not name:
                raise UserError(f"{labels}:{n}: expected '<file> <label>' (trdg -na 2 format)")
            entries.append((src / name, label))
        return entries, bad
    found = []
    for p in src.iterdir():
        if not p.is_file() or p.suffix.lower() not in IMAGE_EXTS:
            continue
        if p.stem.endswith("_mask"):  # trdg -om 1 writes <name>_mask.png beside each image
            bad["trdg mask file ignored"] += 1
            continue
        if name_format == 0:
            label, sep, index = p.stem.rpartition("_")
        else:
            index, sep, label = p.stem.partition("_")
        if not sep or not index.isdigit():
            bad["file name not trdg's"] += 1
            continue
        found.append((int(index), p, label))
    found.sort(key=lambda t: (t[0], t[1].name))
    return [(p, label) for _, p, label in found], bad


def convert_trdg(
    src: str | Path, dst: str | Path, name_format: int | None = None, overwrite: bool = False
) -> dict:
    """trdg output dir -> the gt.txt layout (the job of the TRDG2DTRB script).

    ``name_format`` is trdg's ``-na``: 0 ``label_index.ext`` (trdg's default), 1 ``index_label.ext``, 2
    ``index.ext`` + ``labels.txt`` (``<file> <label>`` lines); None picks 2 when labels.txt exists, else 0.
    trdg builds file names with its ``make_filename_valid``, which drops characters other than letters,
    digits, ``_``, ``-`` and spaces and cuts names at 200 characters: with formats 0 and 1 the label is
    what survived in the name, so prefer ``-na 2`` when labels hold punctuation.
    """
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src}: no such directory")
    if name_format is None:
        name_format = 2 if (src / "labels.txt").is_file() else 0
    if name_format not in (0, 1, 2):
        raise UserError(f"unknown trdg name format {name_format} (trdg's -na is 0, 1 or 2)")
    entries, bad = _trdg_entries(src, name_format)
    if not entries:
        raise UserError(f"{src}: no trdg images found (name format {name_format})")
    tally = Tally()
    tally.skipped.update(bad)
    with staged_dir(dst, overwrite) as tmp:
        w = LayoutWriter(tmp)
        for path, label in entries:
            _add_checked(w, tally, path, label, None)
        w.close()
        if tally.written == 0:
            raise UserError(f"{src}: none of {len(entries)} trdg images could be used ({_reasons(tally)})")
    out = tally.as_dict() | {"name_format": name_format}
    if name_format != 2:
        out["note"] = (
            "labels were read from file names, where trdg drops punctuation ('2.0' is named '20'): "
            "generate with trdg -na 2 when words hold any"
        )
    return out


# ---------------------------------------------------------------- real crops -> layout


def read_labels_csv(path: Path) -> list[tuple[str, str]]:
    """EasyOCR trainer's labels.csv: header ``filename,words``; the words are everything after the first
    comma (EasyOCR splits on it alone), and CSV quoting is honoured."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8") from None
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, None)
    if not header or [h.strip() for h in header[:2]] != ["filename", "words"]:
        raise UserError(f"{path}:1: expected the header 'filename,words' (EasyOCR trainer's labels.csv)")
    out = []
    for row in rows:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < 2:
            raise UserError(f"{path}:{rows.line_num}: expected 'filename,words', found no comma")
        out.append((row[0], ",".join(row[1:])))
    if not out:
        raise UserError(f"{path}: no samples in it")
    return out


def import_crops(
    src: str | Path, dst: str | Path, charset: str | None = "korean_g2", overwrite: bool = False
) -> dict:
    """Real labelled crops (a gt.txt layout, or EasyOCR trainer's labels.csv) -> the gt.txt layout.

    Labels are NFC-normalized; those with characters outside ``charset`` are skipped and the characters
    counted; images that do not decode are skipped and counted; an EXIF rotation is applied. Every sample
    gets a samples.tsv row (font ``real`` unless the source layout named one) so real and synthetic data
    stay apart in evaluation.
    """
    src = Path(src)
    if not src.is_dir():
        raise UserError(f"{src}: no such directory")
    allowed = set(load_charset(charset)) if charset else None
    if (src / GT_FILE).is_file():
        entries = read_gt(src)
        sidecar = read_samples(src)
    elif (src / "labels.csv").is_file():
        entries = read_labels_csv(src / "labels.csv")
        for name, _ in entries:
            check_relative(name, str(src / "labels.csv"), src)
        sidecar = {}
    else:
        raise UserError(f"{src}: neither {GT_FILE} nor labels.csv found")
    tally = Tally()
    with staged_dir(dst, overwrite) as tmp:
        w = LayoutWriter(tmp)
        for rel, label in entries:
            font, source = sidecar.get(rel, ("real", src.name))
            _add_checked(w, tally, src / rel, label, allowed, font, source, exif=True)
        w.close()
        if tally.written == 0:
            raise UserError(f"{src}: none of {len(entries)} samples could be imported ({_reasons(tally)})")
    return tally.as_dict()


def _reasons(tally: Tally) -> str:
    parts = [f"{k}: {v}" for k, v in tally.skipped.most_common()]
    if tally.bad_chars:
        parts.append(
            "characters outside the charset: " + "".join(c for c, _ in tally.bad_chars.most_common(20))
        )
    return "; ".join(parts) or "nothing found"

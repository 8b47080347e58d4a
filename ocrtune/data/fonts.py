"""Handwriting font records and the fetched set's manifest, so every dataset can say what drew it.

A fonts directory holds the font files and ``fonts.json``, recording each font's source (Debian, npm or the
user's own file), package version, licence and sha256. Every step that draws text loads the set from here;
only set-up fetches it (``ocrtune.data.font_fetch``), so this module runs no registry client.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from fontTools.ttLib import TTFont, TTLibError
from PIL import ImageFont

from ocrtune.errors import UserError
from ocrtune.files import cache_dir, write_text

MANIFEST = "fonts.json"
MANIFEST_VERSION = 1
FONT_EXTENSIONS = (".ttf", ".otf", ".woff", ".woff2")
SOURCES = ("debian", "npm", "user")
FONTS_DIR_ENV = "OCRTUNE_FONTS_DIR"


@dataclass(frozen=True)
class Font:
    name: str
    path: str
    source: str
    package: str
    version: str
    license: str
    sha256: str


def face_of(font: Font) -> str:
    """The typeface a font file draws, from its family name, so one hand shipped twice counts once.

    Lower-cased, letters and digits only, a trailing "script" dropped: Debian's "Nanum Pen Script" and npm's
    "Nanum Pen" are one face, and so are the regular and the bold of NanumBarunpen.
    """
    try:
        family = ImageFont.truetype(font.path, 20).getname()[0] or font.name
    except OSError:
        family = font.name
    key = "".join(ch for ch in family.lower() if ch.isalnum())
    return key.removesuffix("script") or key


def default_fonts_dir() -> Path:
    """``$OCRTUNE_FONTS_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/ocrtune/fonts``."""
    return cache_dir("fonts", FONTS_DIR_ENV)


def check_font_file(path: str | Path) -> None:
    """UserError (one line naming the file) unless Pillow/FreeType and fontTools both load it as a font."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such font file")
    if p.suffix.lower() not in FONT_EXTENSIONS:
        raise UserError(f"{p}: not a font file (expected {', '.join(FONT_EXTENSIONS)})")
    try:
        ImageFont.truetype(str(p), 32)
    except OSError as exc:
        raise UserError(f"{p}: not a font (FreeType cannot load it: {exc})") from None
    try:
        TTFont(str(p), lazy=True).getBestCmap()
    except (TTLibError, ImportError, OSError, ValueError, KeyError, AssertionError) as exc:
        raise UserError(f"{p}: not a readable font ({type(exc).__name__}: {exc})") from None


# -- manifest --------------------------------------------------------------------------------------------


def read_manifest(d: Path) -> dict | None:
    """The parsed ``d/fonts.json``, None when there is none; UserError when it is not a fonts manifest."""
    path = d / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path}: fonts manifest is not valid JSON ({exc}); delete it and fetch again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("fonts"), list):
        raise UserError(f"{path}: not an ocrtune fonts manifest; delete it and fetch again")
    return data


def font_from_entry(d: Path, entry: dict) -> Font:
    """The Font of one manifest entry (its file relative to ``d``)."""
    try:
        return Font(
            name=entry["name"],
            path=str((d / entry["file"]).resolve()),
            source=entry["source"],
            package=entry["package"],
            version=entry["version"],
            license=entry["license"],
            sha256=entry["sha256"],
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{d / MANIFEST}: malformed font entry ({exc}); delete it and fetch again") from None


def write_manifest(d: Path, fonts: list[Font], attempted: Iterable[str]) -> None:
    """Write ``d/fonts.json`` atomically: the fonts (files relative to ``d``) and the sources tried."""
    entries = []
    for f in fonts:
        entry = asdict(f)
        entry["file"] = os.path.relpath(f.path, d)
        del entry["path"]
        entries.append(entry)
    data = {"version": MANIFEST_VERSION, "attempted": sorted(set(attempted)), "fonts": entries}
    write_text(d / MANIFEST, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def load_fonts(dir: str | Path | None = None) -> list[Font]:
    """The fonts of a fetched directory; UserError if nothing was fetched there or a file is missing."""
    d = Path(dir) if dir is not None else default_fonts_dir()
    data = read_manifest(d)
    if data is None or not data["fonts"]:
        raise UserError(f"no fonts in {d}: run `ocrtune fonts fetch` first")
    fonts = [font_from_entry(d, e) for e in data["fonts"]]
    for f in fonts:
        if not Path(f.path).is_file():
            raise UserError(
                f"{f.path}: font file listed in {d / MANIFEST} is missing; run `ocrtune fonts fetch`"
            )
    return fonts

"""Which characters a font really draws: rendered and checked for ink, because a cmap can lie.

NanumSquare (fonts-nanum-extra) maps all 11,172 Hangul syllables yet 8,693 of them are empty glyphs; a
Latin-only font draws its .notdef box for every syllable it does not map. A character counts as drawn only
when the font maps it AND rendering it leaves ink, so no training image ever shows a blank or a box under a
label. The answer is cached per (font sha256, charset) because every renderer start asks for it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import string
from pathlib import Path

from fontTools.ttLib import TTFont
from PIL import ImageFont

from ocrtune.charsets import all_syllables, is_hangul
from ocrtune.data.fonts import Font, check_font_file
from ocrtune.errors import UserError
from ocrtune.files import cache_dir as ocrtune_cache_dir
from ocrtune.files import sha256_file, write_text

CACHE_VERSION = 2  # bump when the drawing test changes, so old answers are not reused
RENDER_PX = 32  # large enough that the thinnest stroke of a real glyph leaves ink
LATIN_DIGITS = string.ascii_letters + string.digits  # 62
CACHE_ENV = "OCRTUNE_GLYPHS_CACHE"


def default_cache_dir() -> Path:
    """``$OCRTUNE_GLYPHS_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/ocrtune/glyphs``."""
    return ocrtune_cache_dir("glyphs", CACHE_ENV)


def _identity(font: Font | str | Path) -> tuple[Path, str]:
    if isinstance(font, Font):
        return Path(font.path), font.sha256
    path = Path(font)
    check_font_file(path)
    return path, sha256_file(path)


def mapped_codepoints(font: Font | str | Path) -> set[int]:
    """Code points the font's cmap claims (what a cmap-only check would believe)."""
    path = Path(font.path) if isinstance(font, Font) else Path(font)
    try:
        cmap = TTFont(str(path), lazy=True).getBestCmap()
    except Exception as exc:  # noqa: BLE001 - fontTools raises many types for a broken file
        raise UserError(f"{path}: not a readable font ({type(exc).__name__}: {exc})") from None
    return set(cmap or ())


def _render_drawn(path: Path, charset: str) -> tuple[str, str]:
    """(characters that draw ink, characters the cmap maps), both in charset order."""
    try:
        pil_font = ImageFont.truetype(str(path), RENDER_PX, layout_engine=ImageFont.Layout.BASIC)
    except OSError as exc:
        raise UserError(f"{path}: not a font (FreeType cannot load it: {exc})") from None
    cmap = mapped_codepoints(path)
    drawn, mapped = [], []
    for ch in charset:
        if ord(ch) in cmap:
            mapped.append(ch)
        if ch == " " or (ord(ch) in cmap and pil_font.getmask(ch).getbbox() is not None):
            drawn.append(ch)
    return "".join(drawn), "".join(mapped)


def _cache_file(cache_dir: Path, font_sha: str, charset: str) -> tuple[Path, str]:
    key = hashlib.sha256(f"{CACHE_VERSION}:{RENDER_PX}:{charset}".encode()).hexdigest()
    return cache_dir / f"{font_sha[:24]}-{key[:24]}.json", key


def drawn_chars(font: Font | str | Path, charset: str, cache_dir: str | Path | None = None) -> str:
    """The characters of ``charset`` (in its order) that ``font`` really draws; space always counts.

    Rendered with Pillow/FreeType and checked for ink, cached as JSON under ``cache_dir`` per font sha256
    and charset. An unwritable cache only costs the time to render again.
    """
    return _record(font, charset, cache_dir)["drawn"]


def _record(font: Font | str | Path, charset: str, cache_dir: str | Path | None) -> dict:
    path, font_sha = _identity(font)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cfile, key = _cache_file(cdir, font_sha, charset)
    try:
        data = json.loads(cfile.read_text("utf-8"))
        if data["font_sha256"] == font_sha and data["charset_sha256"] == key:
            data["drawn"], data["mapped"]  # noqa: B018 - both present, or recompute
            return data
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    drawn, mapped = _render_drawn(path, charset)
    record = {
        "font_sha256": font_sha,
        "charset_sha256": key,
        "charset_size": len(charset),
        "render_px": RENDER_PX,
        "drawn": drawn,
        "mapped": mapped,
    }
    try:  # 0600, as the cache has always been written
        write_text(cfile, json.dumps(record, ensure_ascii=False), mode=None)
    except OSError:
        pass
    return record


def can_draw(drawn: set[str] | str, word: str) -> bool:
    """True when every character of ``word`` is drawn (space always is)."""
    return all(ch == " " or ch in drawn for ch in word)


def flag(drawn: str, charset: str, charset_name: str = "the charset") -> str | None:
    """A warning when a font is useless for ``charset``: it draws none of its Hangul syllables (a Latin-only
    font for a Korean charset), or for a charset without Hangul none of its letters and digits. None when usable."""
    drawn_set = set(drawn)
    hangul = [c for c in charset if is_hangul(c)]
    if hangul:
        target, what = hangul, "Hangul syllables"
    else:
        target = [c for c in charset if c.isalnum()] or [c for c in charset if c != " "]
        what = "letters and digits" if any(c.isalnum() for c in charset) else "characters"
    if target and not drawn_set.intersection(target):
        return f"draws none of the {len(target)} {what} of {charset_name}"
    return None


def coverage(font: Font, charset: str, charset_name: str, cache_dir: str | Path | None = None) -> dict:
    """One row of ``ocrtune fonts report``: what the font draws of all syllables, the charset and Latin."""
    syllables = all_syllables()
    syl = _record(font, syllables, cache_dir)
    drawn_cs = drawn_chars(font, charset, cache_dir)
    drawn_lat = drawn_chars(font, LATIN_DIGITS, cache_dir)
    return {
        "name": font.name,
        "source": font.source,
        "package": font.package,
        "version": font.version,
        "license": font.license,
        "syllables_drawn": len(syl["drawn"]),
        "syllables_mapped": len(syl["mapped"]),
        "syllables_total": len(syllables),
        "charset": charset_name,
        "charset_drawn": len(drawn_cs),
        "charset_total": len(charset),
        "latin_digits_drawn": len(drawn_lat),
        "latin_digits_total": len(LATIN_DIGITS),
        "flag": flag(drawn_cs, charset, charset_name),
    }


def coverage_table(
    fonts: list[Font],
    charset: str,
    charset_name: str,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> list[dict]:
    """``coverage`` of every font, in order; fonts are rendered in parallel processes the first time."""
    workers = min(len(fonts), workers or os.cpu_count() or 1)
    job = functools.partial(coverage, charset=charset, charset_name=charset_name, cache_dir=cache_dir)
    if workers <= 1:
        return [job(f) for f in fonts]
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        return list(pool.map(job, fonts))

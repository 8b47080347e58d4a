"""Fetching handwriting fonts from package registries (Debian, npm) and the user's own files.

Fonts come from Debian packages (when apt is usable), from npm ``@fontsource`` packages (``npm pack``, no
root) and from the user's own files (``--add``). All are copied into one directory whose ``fonts.json``
(``ocrtune.data.fonts``) records each font's source, package version, licence and sha256. A second fetch
with every file intact does nothing, so set-up is instant and works offline once cached. Kept apart from
``fonts`` because only set-up fetches; every other step just loads the fetched set.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from fontTools.ttLib import TTFont

from ocrtune.charsets import load_charset
from ocrtune.data.fonts import (
    FONT_EXTENSIONS,
    Font,
    check_font_file,
    default_fonts_dir,
    font_from_entry,
    read_manifest,
    write_manifest,
)
from ocrtune.data.glyphs import drawn_chars, flag
from ocrtune.errors import UserError
from ocrtune.files import copy_file, sha256_file

# Debian package -> [(file name in the package, font name)]: the handwriting-like faces only.
DEBIAN_FONTS: dict[str, list[tuple[str, str]]] = {
    "fonts-nanum-extra": [
        ("NanumPen.ttf", "NanumPen"),
        ("NanumBrush.ttf", "NanumBrush"),
        ("NanumBarunpenR.ttf", "NanumBarunpen"),
        ("NanumBarunpenB.ttf", "NanumBarunpenBold"),
    ],
    "fonts-unfonts-core": [("UnPilgi.ttf", "UnPilgi"), ("UnGungseo.ttf", "UnGungseo")],
    "fonts-unfonts-extra": [
        ("UnPen.ttf", "UnPen"),
        ("UnPenheulim.ttf", "UnPenheulim"),
        ("UnPilgia.ttf", "UnPilgia"),
    ],
    "fonts-alee": [("EunjinNakseo.ttf", "EunjinNakseo")],
}

# @fontsource family -> font name; each package carries files/<family>-korean-400-normal.woff2.
NPM_FONTS: dict[str, str] = {
    "gaegu": "Gaegu",
    "poor-story": "PoorStory",
    "hi-melody": "HiMelody",
    "gamja-flower": "GamjaFlower",
    "east-sea-dokdo": "EastSeaDokdo",
    "nanum-pen-script": "NanumPenScript",
    "nanum-brush-script": "NanumBrushScript",
}

Echo = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- Debian ----------------------------------------------------------------------------------------------


def _dpkg_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip().endswith("installed") and "not-installed" not in r.stdout


def _apt_install(pkgs: list[str], echo: Echo) -> bool:
    cmd = [
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "DPkg::Lock::Timeout=300",
        *pkgs,
    ]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0 and re.search(r"Unable to locate package|has no installation candidate", r.stderr):
        echo("apt: package lists lack the font packages; running apt-get update")
        subprocess.run(
            ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"],
            capture_output=True,
            env=env,
            timeout=900,
        )
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        echo(f"apt: installing {' '.join(pkgs)} failed ({last}); going on without them")
        return False
    return True


def _debian_license(pkg: str) -> str:
    """The licence of the ``Files: *`` stanza of the package's machine-readable copyright file."""
    path = Path("/usr/share/doc") / pkg / "copyright"
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError:
        return "unknown"
    for stanza in re.split(r"\n\s*\n", text):
        if re.search(r"^Files:\s*\*\s*$", stanza, re.M):
            m = re.search(r"^License:\s*(\S.*)$", stanza, re.M)
            if m:
                return m.group(1).strip()
    m = re.search(r"^License:\s*(\S.*)$", text, re.M)
    return m.group(1).strip() if m else "unknown"


def _debian_fonts(d: Path, echo: Echo) -> list[Font]:
    if not shutil.which("dpkg-query") or not shutil.which("dpkg"):
        echo("Debian fonts skipped: dpkg is not available here")
        return []
    missing = [p for p in DEBIAN_FONTS if not _dpkg_installed(p)]
    if missing:
        if not shutil.which("apt-get"):
            echo(f"Debian fonts skipped for {' '.join(missing)}: apt-get is not available here")
        elif os.geteuid() != 0:
            echo(f"Debian fonts skipped for {' '.join(missing)}: apt-get needs root (uid {os.geteuid()})")
        else:
            _apt_install(missing, echo)
    fonts = []
    for pkg, wanted in DEBIAN_FONTS.items():
        if not _dpkg_installed(pkg):
            continue
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=True
        ).stdout.strip()
        listed = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True).stdout.split(
            "\n"
        )
        by_name = {Path(line).name: Path(line) for line in listed if line.lower().endswith(FONT_EXTENSIONS)}
        license_ = _debian_license(pkg)
        for file_name, name in wanted:
            src = by_name.get(file_name)
            if src is None or not src.is_file():
                echo(f"Debian font {file_name} not found in {pkg} {version}; skipped")
                continue
            fonts.append(_install_file(d, src, name, "debian", pkg, version, license_))
    return fonts


# -- npm -------------------------------------------------------------------------------------------------


def _npm_pack(specs: list[str], dest: Path) -> subprocess.CompletedProcess:
    cmd = [
        "npm",
        "pack",
        "--prefer-offline",
        "--loglevel=error",
        "--fetch-retries=1",
        "--fetch-timeout=60000",
    ]
    cmd += ["--pack-destination", str(dest), *specs]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=dest)


NETWORK_ERRORS = ("ECONNREFUSED", "ENOTFOUND", "ETIMEDOUT", "EAI_AGAIN", "ECONNRESET", "ENETUNREACH")


def _npm_reason(stderr: str) -> tuple[str, str]:
    """(npm's error code, its first message line) from ``npm error`` lines."""
    lines = [ln.removeprefix("npm error").strip() for ln in stderr.splitlines() if ln.startswith("npm error")]
    code = next((ln.split()[1] for ln in lines if ln.startswith("code ") and len(ln.split()) > 1), "")
    skip = ("code ", "syscall ", "errno ", "404 ")
    msg = next((ln for ln in lines if ln and not ln.startswith(skip)), "") or next(
        iter(stderr.splitlines()), ""
    )
    return code, msg[:200] or "no message"


def _npm_fonts(d: Path, echo: Echo) -> list[Font]:
    if not shutil.which("npm"):
        echo("npm fonts skipped: npm is not available here")
        return []
    fonts = []
    with tempfile.TemporaryDirectory(prefix="ocrtune-npm-") as tmp:
        dest = Path(tmp)
        specs = [f"@fontsource/{family}" for family in NPM_FONTS]
        r = _npm_pack(specs, dest)
        if r.returncode != 0:
            code, msg = _npm_reason(r.stderr)
            failed = specs
            if code not in NETWORK_ERRORS:  # one bad package must not cost the others: retry one by one
                failed = [spec for spec in specs if _npm_pack([spec], dest).returncode != 0]
            if failed:
                echo(f"npm fonts skipped for {' '.join(failed)}: npm pack failed ({code or 'error'}: {msg})")
        for family, name in NPM_FONTS.items():
            tarballs = sorted(dest.glob(f"fontsource-{family}-*.tgz"))
            if not tarballs:
                continue
            font = _from_tarball(d, tarballs[-1], family, name, echo)
            if font is not None:
                fonts.append(font)
    return fonts


def _from_tarball(d: Path, tarball: Path, family: str, name: str, echo: Echo) -> Font | None:
    member = f"package/files/{family}-korean-400-normal.woff2"
    with tarfile.open(tarball, "r:gz") as tar:
        try:
            meta = json.load(tar.extractfile("package/package.json"))
            data = tar.extractfile(member).read()
        except (KeyError, AttributeError, json.JSONDecodeError) as exc:
            echo(f"npm: {tarball.name} lacks {member} or package.json ({exc}); skipped")
            return None
    src = tarball.with_name(Path(member).name)
    src.write_bytes(data)
    return _install_file(
        d,
        src,
        name,
        "npm",
        meta.get("name", f"@fontsource/{family}"),
        meta.get("version", ""),
        meta.get("license", "unknown"),
    )


# -- user files ------------------------------------------------------------------------------------------


def _user_license(path: Path) -> str:
    """OFL-1.1 when the font's own licence record says so; otherwise unknown (a person must check)."""
    try:
        names = TTFont(str(path), lazy=True)["name"]
    except Exception:  # noqa: BLE001 - a font without a name table simply has no licence record
        return "unknown"
    for rec in names.names:
        if rec.nameID in (13, 14):
            text = rec.toUnicode(errors="replace")
            if "Open Font License" in text or "scripts.sil.org/OFL" in text or "openfontlicense.org" in text:
                return "OFL-1.1"
    return "unknown"


# -- assembling the directory ----------------------------------------------------------------------------


def _install_file(
    d: Path, src: Path, name: str, source: str, package: str, version: str, license_: str
) -> Font:
    """Copy ``src`` into ``d`` as ``<name><ext>`` (atomically) and describe it."""
    check_font_file(src)
    dst = d / f"{name}{src.suffix.lower()}"
    digest = sha256_file(src)
    if not (dst.is_file() and sha256_file(dst) == digest):
        copy_file(src, dst)
    return Font(name, str(dst.resolve()), source, package, version, license_, digest)


def _unique_name(stem: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "font"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


def _merge(groups: Iterable[list[Font]]) -> list[Font]:
    """First font wins for a name or a file hash: the same face from two sources is kept only if the files differ."""
    out, names, hashes = [], set(), set()
    for group in groups:
        for f in group:
            if f.sha256 in hashes or f.name in names:
                continue
            out.append(f)
            names.add(f.name)
            hashes.add(f.sha256)
    return out


def fetch_fonts(
    dir: str | Path | None = None,
    add: Iterable[str | Path] = (),
    use_apt: bool = True,
    use_npm: bool = True,
    *,
    refresh: bool = False,
    charset: str = "korean_g2",
    echo: Echo | None = None,
) -> list[Font]:
    """Fetch the registry fonts and the user's ``add`` files into ``dir`` and write its ``fonts.json``.

    Cached: when the manifest exists, its files are intact, the requested sources were tried before and
    every ``add`` file is already in it, nothing is run (no apt, no npm). ``refresh`` forces a new fetch.
    A user font that draws none of ``charset`` is kept but warned about. UserError when no font at all is
    available.
    """
    echo = echo or _stderr
    d = Path(dir) if dir is not None else default_fonts_dir()
    add_paths = [Path(p) for p in add]
    for p in add_paths:
        check_font_file(p)
    add_hashes = {sha256_file(p): p for p in add_paths}

    d.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:  # two set-ups at once (make test, a worker) fetch one at a time; a read-only dir needs no lock
            lock = stack.enter_context(open(d / ".fetch.lock", "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError:
            pass
        fonts, new_user = _fetch_locked(d, add_hashes, use_apt, use_npm, refresh, echo)

    if new_user:
        chars = load_charset(charset)
        for f in new_user:
            note = flag(drawn_chars(f, chars), chars, charset)
            if note:
                echo(f"warning: {f.name} ({Path(add_hashes[f.sha256]).name}) {note}")
    return fonts


def _fetch_locked(
    d: Path, add_hashes: dict[str, Path], use_apt: bool, use_npm: bool, refresh: bool, echo: Echo
) -> tuple[list[Font], list[Font]]:
    """The fetch proper, under the directory's lock: (all fonts, user fonts added now)."""
    data = read_manifest(d)
    existing = [font_from_entry(d, e) for e in data["fonts"]] if data else []
    attempted = set(data.get("attempted", [])) if data else set()
    requested = {s for s, on in (("apt", use_apt), ("npm", use_npm)) if on}
    intact_fonts = [f for f in existing if Path(f.path).is_file() and sha256_file(f.path) == f.sha256]
    for f in existing:
        if f not in intact_fonts:
            echo(f"font {f.name}: {f.path} is missing or changed since it was fetched; fetching again")
    intact = data is not None and len(intact_fonts) == len(existing)
    existing = intact_fonts
    known = {f.sha256 for f in existing}
    if intact and not refresh and requested <= attempted and set(add_hashes) <= known and existing:
        return existing, []

    fetched: list[list[Font]] = []
    do_sources = refresh or not intact or not requested <= attempted
    if do_sources and use_apt:
        fetched.append(_debian_fonts(d, echo))
    if do_sources and use_npm:
        fetched.append(_npm_fonts(d, echo))
    groups = [*fetched, existing]

    taken = {f.name for g in groups for f in g}
    added = []
    for digest, p in add_hashes.items():
        if digest in known or any(f.sha256 == digest for g in fetched for f in g):
            continue
        name = _unique_name(p.stem, taken)
        taken.add(name)
        font = _install_file(d, p, name, "user", p.name, "", _user_license(p))
        added.append(font)
    fonts = _merge([*groups, added])
    if not fonts:
        raise UserError(
            f"no font available in {d}: no source gave one (see the notes above); add your own with --add FILE.ttf"
        )
    write_manifest(d, fonts, attempted | requested)

    return fonts, added

"""Fetching fonts from the real registries (Debian, npm) and user files, into a manifest and a real cache."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import matplotlib
import pytest
from support.cli import run_cli

from ocrtune.data.font_fetch import NPM_FONTS, fetch_fonts
from ocrtune.data.fonts import MANIFEST, load_fonts
from ocrtune.errors import UserError
from ocrtune.files import sha256_file
from ocrtune.platform.stack import free_ports

DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
APT_USABLE = os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="session")
def fonts():
    """The real fetched fonts (the default cache when `make test` already fetched them)."""
    return fetch_fonts()


@pytest.fixture()
def tripwire(tmp_path):
    """A PATH whose npm/apt-get/dpkg/dpkg-query fail and leave a mark: proof that they were (not) called."""
    bindir, mark = tmp_path / "tripwire", tmp_path / "called"
    bindir.mkdir()
    for tool in ("npm", "apt-get", "dpkg", "dpkg-query"):
        script = bindir / tool
        script.write_text(f'#!/bin/sh\necho {tool} >> "{mark}"\necho "{tool}: no network" >&2\nexit 1\n')
        script.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    return env, mark


def _user_font(fonts, name: str, dst: Path) -> Path:
    src = next(f for f in fonts if f.name == name)
    shutil.copyfile(src.path, dst)
    return dst


@pytest.mark.skipif(not APT_USABLE, reason="apt-get needs root here")
def test_debian_fonts_carry_the_package_version_and_licence(tmp_path):
    got = fetch_fonts(tmp_path, use_npm=False)
    assert {f.source for f in got} == {"debian"}
    for f in got:
        version = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", f.package], capture_output=True, text=True, check=True
        ).stdout
        assert f.version == version
        copyright_ = Path("/usr/share/doc", f.package, "copyright").read_text("utf-8", errors="replace")
        assert f"License: {f.license}" in copyright_
        assert Path(f.path).stat().st_mode & 0o444 == 0o444  # readable by the renderer in any container


def test_npm_fetch_then_cached_offline(tmp_path, tripwire):
    """A real `npm pack` of the @fontsource packages; the second fetch calls neither npm nor apt."""
    d = tmp_path / "fonts"
    got = fetch_fonts(d, use_apt=False)
    assert {f.name for f in got} == set(NPM_FONTS.values())
    for f in got:
        family = next(k for k, v in NPM_FONTS.items() if v == f.name)
        assert f.package == f"@fontsource/{family}" and f.version.count(".") == 2
    env, mark = tripwire
    r = run_cli("fonts", "fetch", "--dir", str(d), "--no-apt", env=env)
    assert r.returncode == 0, r.stderr
    assert not mark.exists(), mark.read_text()
    assert f"{len(got)} fonts in {d}" in r.stdout
    assert load_fonts(d) == got
    # asking for a source never tried (apt) is a new fetch, not a cache hit
    r = run_cli("fonts", "fetch", "--dir", str(d), env=env)
    assert r.returncode == 0, r.stderr
    assert mark.exists()
    assert load_fonts(d) == got  # the npm fonts fetched before are kept when npm is unreachable


def test_npm_tarball_layout(tmp_path):
    """The @fontsource package really carries the file we take, with licence and version in package.json."""
    r = subprocess.run(
        ["npm", "pack", "--prefer-offline", "--silent", "@fontsource/gaegu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    with tarfile.open(next(tmp_path.glob("*.tgz"))) as tar:
        names = tar.getnames()
        meta = json.load(tar.extractfile("package/package.json"))
    assert "package/files/gaegu-korean-400-normal.woff2" in names
    assert meta["license"] == "OFL-1.1"


def test_nothing_available_is_one_user_error(tmp_path, tripwire):
    env, mark = tripwire
    r = run_cli("fonts", "fetch", "--dir", str(tmp_path / "f"), "--no-apt", env=env)
    assert r.returncode == 2
    assert "npm fonts skipped" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("ocrtune: error: no font available")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "f" / MANIFEST).exists()


def test_unreachable_npm_registry_is_a_note_then_one_user_error(tmp_path):
    """The real npm against a registry that refuses connections: what a machine without network sees."""
    (port,) = free_ports(1)
    env = {
        "npm_config_registry": f"http://127.0.0.1:{port}/",
        "npm_config_cache": str(tmp_path / "npm-cache"),
    }
    r = run_cli("fonts", "fetch", "--dir", str(tmp_path / "f"), "--no-apt", env=env)
    assert r.returncode == 2
    notes = r.stderr.strip().splitlines()
    assert (
        len(notes) == 2
        and "npm fonts skipped for @fontsource/gaegu" in notes[0]
        and "ECONNREFUSED" in notes[0]
    )
    assert notes[1].startswith("ocrtune: error: no font available")


def test_user_fonts_added_deduplicated_and_kept(fonts, tmp_path):
    d = tmp_path / "fonts"
    mine = _user_font(fonts, "UnPen" if APT_USABLE else "PoorStory", tmp_path / "My Hand.ttf")
    notes: list[str] = []
    got = fetch_fonts(d, add=[mine], use_apt=False, use_npm=False, echo=notes.append)
    assert [(f.name, f.source, f.package) for f in got] == [("My-Hand", "user", "My Hand.ttf")]
    assert notes == []
    same = tmp_path / "copy.ttf"
    shutil.copyfile(mine, same)
    assert fetch_fonts(d, add=[same], use_apt=False, use_npm=False) == got  # same file hash: no duplicate
    # a second user font joins the first; the first stays
    other = _user_font(fonts, "Gaegu", tmp_path / "My Hand.woff2")
    got2 = fetch_fonts(d, add=[other], use_apt=False, use_npm=False)
    assert [f.name for f in got2] == ["My-Hand", "My-Hand-2"]
    assert load_fonts(d) == got2
    # a damaged file is noticed and replaced from the file given again
    Path(got2[0].path).write_bytes(b"\0" * 100)
    notes.clear()
    got3 = fetch_fonts(d, add=[mine], use_apt=False, use_npm=False, echo=notes.append)
    assert any("missing or changed" in n for n in notes)
    assert sha256_file(next(f.path for f in got3 if f.sha256 == got2[0].sha256)) == got2[0].sha256


def test_font_drawing_no_hangul_is_added_with_a_warning(tmp_path):
    latin = tmp_path / "DejaVuSans.ttf"
    shutil.copyfile(DEJAVU, latin)
    r = run_cli("fonts", "fetch", "--dir", str(tmp_path / "f"), "--no-apt", "--no-npm", "--add", str(latin))
    assert r.returncode == 0, r.stderr
    assert (
        "warning: DejaVuSans (DejaVuSans.ttf) draws none of the 913 Hangul syllables of korean_g2" in r.stderr
    )
    r = run_cli("fonts", "report", "--dir", str(tmp_path / "f"))
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("DejaVuSans"))
    assert "0/11,172" in row and "95/1008" in row and "62/62" in row and "FLAGGED" in row


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("notes.ttf", b"just some text, not a font\n" * 20, "notes.ttf: not a font"),
        ("empty.woff2", b"", "empty.woff2: not a font"),
        ("font.txt", b"whatever", "font.txt: not a font file (expected .ttf, .otf, .woff, .woff2)"),
    ],
)
def test_a_file_that_is_not_a_font_is_one_user_error(tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(message)):
        fetch_fonts(tmp_path / "f", add=[bad], use_apt=False, use_npm=False)
    r = run_cli("fonts", "fetch", "--dir", str(tmp_path / "f"), "--no-apt", "--no-npm", "--add", str(bad))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr
    assert not (tmp_path / "f" / MANIFEST).exists()


def test_missing_font_file(tmp_path):
    with pytest.raises(UserError, match="no such font file"):
        fetch_fonts(tmp_path, add=[tmp_path / "nope.ttf"], use_apt=False, use_npm=False)

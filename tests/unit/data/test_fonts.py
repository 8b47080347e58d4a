"""Font records and the fetched set's manifest: loading, refusing a broken manifest, the report."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from support.cli import run_cli

from ocrtune.data.font_fetch import DEBIAN_FONTS, NPM_FONTS, fetch_fonts
from ocrtune.data.fonts import MANIFEST, default_fonts_dir, load_fonts
from ocrtune.errors import UserError
from ocrtune.files import sha256_file

APT_USABLE = os.geteuid() == 0 and shutil.which("apt-get") is not None


@pytest.fixture(scope="session")
def fonts():
    """The real fetched fonts (the default cache when `make test` already fetched them)."""
    return fetch_fonts()


def test_default_fetch_writes_a_complete_manifest(fonts):
    d = default_fonts_dir()
    manifest = json.loads((d / MANIFEST).read_text("utf-8"))
    assert [e["name"] for e in manifest["fonts"]] == [f.name for f in fonts]
    assert len({f.name for f in fonts}) == len(fonts) and len({f.sha256 for f in fonts}) == len(fonts)
    for f in fonts:
        assert Path(f.path).parent == d.resolve()
        assert sha256_file(f.path) == f.sha256
        assert f.source in ("debian", "npm", "user") and f.license and f.package
    assert load_fonts() == fonts
    npm = [f for f in fonts if f.source == "npm"]
    assert {f.name for f in npm} <= set(NPM_FONTS.values())
    assert all(f.license == "OFL-1.1" and f.path.endswith(".woff2") for f in npm)
    if APT_USABLE:
        names = {name for entries in DEBIAN_FONTS.values() for _, name in entries}
        assert {f.name for f in fonts if f.source == "debian"} == names


def test_missing_manifest(tmp_path):
    with pytest.raises(UserError, match="no fonts in .*: run `ocrtune fonts fetch` first"):
        load_fonts(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="fonts manifest is not valid JSON"):
        load_fonts(tmp_path)


def test_report_table_and_json(fonts):
    r = run_cli("fonts", "report")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["font", "source", "licence", "syllables"]
    for f in fonts:
        assert any(line.split()[:3] == [f.name, f.source, f.license] for line in lines[1:])
    r = run_cli("fonts", "report", "--json")
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {f.name for f in fonts}
    assert rows["Gaegu"]["syllables_drawn"] < 11172 // 3
    for row in rows.values():
        assert f"{row['charset_drawn']}/{row['charset_total']}" in next(
            line for line in lines if line.split()[0] == row["name"]
        )

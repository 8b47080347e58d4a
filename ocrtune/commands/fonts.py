"""``ocrtune fonts fetch|report``: handwriting fonts from registries, and what each really draws."""

from __future__ import annotations

import json

import click

dir_option = click.option(
    "--dir",
    "fonts_dir",
    type=click.Path(file_okay=False),
    envvar="OCRTUNE_FONTS_DIR",
    help="Fonts directory (default ${XDG_CACHE_HOME:-~/.cache}/ocrtune/fonts; env OCRTUNE_FONTS_DIR).",
)


@click.group()
def fonts() -> None:
    """Handwriting fonts: Debian and npm packages plus your own files, with a manifest and glyph coverage."""


@fonts.command()
@dir_option
@click.option(
    "--add",
    "add",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Your own .ttf/.otf/.woff/.woff2 file (repeatable).",
)
@click.option("--no-apt", is_flag=True, help="Do not take fonts from Debian packages.")
@click.option("--no-npm", is_flag=True, help="Do not take fonts from npm @fontsource packages.")
@click.option("--refresh", is_flag=True, help="Fetch again even when the cached fonts are intact.")
@click.option(
    "--charset", default="korean_g2", show_default=True, help="Warn about added fonts that draw none of it."
)
def fetch(fonts_dir, add, no_apt, no_npm, refresh, charset) -> None:
    """Fetch the fonts into the fonts directory and write its fonts.json (instant when cached)."""
    from ocrtune.data.font_fetch import fetch_fonts
    from ocrtune.data.fonts import default_fonts_dir

    got = fetch_fonts(
        fonts_dir,
        add=add,
        use_apt=not no_apt,
        use_npm=not no_npm,
        refresh=refresh,
        charset=charset,
        echo=lambda m: click.echo(m, err=True),
    )
    by_source = {s: sum(f.source == s for f in got) for s in ("debian", "npm", "user")}
    where = fonts_dir or default_fonts_dir()
    counts = ", ".join(f"{n} {s}" for s, n in by_source.items() if n)
    click.echo(f"{len(got)} fonts in {where} ({counts})")


@fonts.command()
@dir_option
@click.option("--charset", default="korean_g2", show_default=True, help="Charset name or charset file.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def report(fonts_dir, charset, as_json) -> None:
    """Per font: licence, Hangul syllables drawn, charset coverage and Latin/digit coverage (rendered)."""
    from ocrtune.charsets import load_charset
    from ocrtune.data.fonts import load_fonts
    from ocrtune.data.glyphs import coverage_table

    chars = load_charset(charset)
    rows = coverage_table(load_fonts(fonts_dir), chars, charset)
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    header = ("font", "source", "licence", "syllables drawn", "blank", charset, "Latin/digits", "")
    table = [
        (
            r["name"],
            r["source"],
            r["license"],
            f"{r['syllables_drawn']:,}/{r['syllables_total']:,}",
            f"{r['syllables_mapped'] - r['syllables_drawn']:,}",
            f"{r['charset_drawn']}/{r['charset_total']}",
            f"{r['latin_digits_drawn']}/{r['latin_digits_total']}",
            f"FLAGGED: {r['flag']}" if r["flag"] else "",
        )
        for r in sorted(rows, key=lambda r: (r["source"], r["name"]))
    ]
    widths = [max(len(str(x[i])) for x in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    click.echo("blank = syllables the cmap maps to an empty glyph (a cmap-only check would count them)")

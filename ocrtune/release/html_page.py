"""Self-contained HTML pages: images as data: URIs, inline style, no links.

The KFP UI shows an HTML artifact in a sandboxed frame and a report is mailed or archived on its own, so a
page may fetch nothing: everything it shows is inside it. Used by the error report and the pipeline's views.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = (
    "body{font-family:sans-serif;margin:16px;color:#222}table{border-collapse:collapse;margin:8px 0 16px}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    "td.l,th.l{text-align:left}img{max-width:100%}.ok{color:#070}.bad{color:#b00}"
    "code{background:#f4f4f4;padding:1px 3px}"
)
METRICS = ("word_acc", "cer", "norm_ed")


def esc(value: Any) -> str:
    return html.escape(str(value))


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_mime(data: bytes) -> str:
    return "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"


def img(data: bytes, alt: str, height: int | None = None) -> str:
    style = f' style="height:{height}px"' if height else ""
    return f'<img src="{data_uri(data, image_mime(data))}" alt="{esc(alt)}"{style}>'


def page(title: str, body: Iterable[str]) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(body)}</body></html>\n"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> str:
    """A table whose first ``left`` columns are text (left-aligned) and the rest figures."""

    def cells(tag: str, row: Sequence[Any]) -> str:
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{c}</{tag}>" for i, c in enumerate(row))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', [esc(h) for h in header])}</tr>{body}</table>"


def fig(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else esc("-" if value is None else value)

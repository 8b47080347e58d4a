"""Where a recognizer goes wrong: an error report by typeface, word length, character class and Hangul jamo.

A word accuracy says how often a model is wrong, not what it gets wrong. This report aligns every reading with
its ground truth (a Levenshtein alignment, so a substitution is told from a deletion) and counts:

- accuracy, CER and norm_ED per typeface and per word length;
- per kind of text (a Hangul word, lowercase / Capitalised / UPPER Latin words, numbers, dates, phrases);
- per character class (Hangul, Latin, digit, punctuation): how many ground-truth characters of the class were
  misread or dropped;
- for Hangul syllables read as another syllable, which part was misread: the initial consonant, the vowel or
  the final consonant. A syllable is ``0xAC00 + (initial * 21 + vowel) * 28 + final``, so the parts are
  arithmetic on the code point;
- the most frequent confusions (``은 -> 를``; a dropped character reads ``은 -> ∅``);
- the worst samples (by normalised edit distance) with their images and both readings (plain easyocr.Reader's,
  which users run, and ocrtune's, when given).

``analyse`` makes the report (plain data, JSON-ready); ``markdown`` and ``html`` render it; ``write_report``
writes ``report.json``, ``report.md`` and ``report.html`` into a directory, all or nothing.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtune.files import staged_dir
from ocrtune.release.frozen_benchmark import Benchmark
from ocrtune.release.html_page import esc, fig, img, page, table
from ocrtune.training.validation import norm_ed_one, score

HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
VOWELS, FINALS = 21, 28
PARTS = ("initial", "vowel", "final")
CLASSES = ("hangul", "latin", "digit", "punctuation", "other")
LENGTHS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 8), (9, 10**6))  # word length buckets, in characters
TEXT_CLASSES = ("hangul", "lower", "Capitalised", "UPPER", "number", "date", "phrase", "other")
DATE = re.compile(
    r"\d{4}[-./] ?\d{1,2}[-./] ?\d{1,2}\.?|\d{1,2}/\d{1,2}/\d{4}|\d{1,2}:\d{2}|(\d{4}년 ?)?(\d{1,2}월 ?)?(\d{1,2}일)?"
    r"|([A-Z][a-z]+ \d{1,2}(, \d{4})?)|(\d{1,2} [A-Z][a-z]+ \d{4})"
)
NUMBER = re.compile(r"[-+]?[\d.,:%/ -]*\d[\d.,:%/ -]*원?")
GAP = "∅"  # the missing side of an insertion or deletion
REPORT_FILES = ("report.json", "report.md", "report.html")


@dataclass(frozen=True)
class Reading:
    """One sample: its ground truth, the reading scored, the other reading (if any), its typeface."""

    gt: str
    pred: str
    font: str | None = None
    other: str | None = None


def char_class(c: str) -> str:
    """Hangul syllable or jamo, Latin letter, digit, punctuation/symbol, or other."""
    if HANGUL_FIRST <= ord(c) <= HANGUL_LAST or 0x1100 <= ord(c) <= 0x11FF or 0x3130 <= ord(c) <= 0x318F:
        return "hangul"
    if c.isascii() and c.isalpha():
        return "latin"
    if c.isdigit():
        return "digit"
    if unicodedata.category(c)[0] in "PS":
        return "punctuation"
    return "other"


def text_class(text: str) -> str:
    """What kind of writing a ground truth is: a Hangul word, a lowercase / Capitalised / UPPER Latin word, a
    number, a date or time, a phrase of several words, or other; the classes a hand writes differently."""
    t = text.strip()
    if t and DATE.fullmatch(t) and any(c.isdigit() for c in t):
        return "date"
    if t and NUMBER.fullmatch(t):
        return "number"
    if " " in t:
        return "phrase"
    if t and all(char_class(c) == "hangul" for c in t):
        return "hangul"
    if t.isascii() and t.isalpha():
        if t.islower():
            return "lower"
        if t.isupper():
            return "UPPER"
        if t[0].isupper() and t[1:].islower():
            return "Capitalised"
    return "other"


def jamo(c: str) -> tuple[int, int, int] | None:
    """(initial, vowel, final) indexes of a precomposed Hangul syllable; None for anything else."""
    code = ord(c) - HANGUL_FIRST
    if not 0 <= code <= HANGUL_LAST - HANGUL_FIRST:
        return None
    return code // (VOWELS * FINALS), (code // FINALS) % VOWELS, code % FINALS


def align(gt: str, pred: str) -> list[tuple[str, str]]:
    """A minimal-edit alignment: (g, p) pairs, ``GAP`` on the side that has no character."""
    n, m = len(gt), len(pred)
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost = gt[i - 1] != pred[j - 1]
            dist[i][j] = min(dist[i - 1][j - 1] + cost, dist[i - 1][j] + 1, dist[i][j - 1] + 1)
    pairs, i, j = [], n, m
    while i or j:
        if i and j and dist[i][j] == dist[i - 1][j - 1] + (gt[i - 1] != pred[j - 1]):
            pairs.append((gt[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i and dist[i][j] == dist[i - 1][j] + 1:
            pairs.append((gt[i - 1], GAP))
            i -= 1
        else:
            pairs.append((GAP, pred[j - 1]))
            j -= 1
    return pairs[::-1]


def length_bucket(word: str) -> str:
    n = len(word.replace(" ", ""))
    lo, hi = next((lo, hi) for lo, hi in LENGTHS if lo <= n <= hi) if n else (0, 0)
    return str(lo) if lo == hi else (f"{lo}+" if hi >= 10**6 else f"{lo}-{hi}")


def word_figures(labels: Sequence[str], preds: Sequence[str]) -> dict[str, float]:
    """word_acc, cer and norm_ed of readings, as training's validation scores them."""
    s = score(labels, preds)
    return {"word_acc": s["accuracy"], "cer": s["cer"], "norm_ed": s["norm_ED"]}


def figures(rows: Sequence[Reading]) -> dict[str, Any]:
    return {"samples": len(rows), **word_figures([r.gt for r in rows], [r.pred for r in rows])}


def grouped(readings: Sequence[Reading], key: Callable[[Reading], str]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        groups.setdefault(key(r), []).append(r)
    return {k: figures(v) for k, v in sorted(groups.items())}


def char_errors(readings: Sequence[Reading]) -> tuple[dict, dict, Counter]:
    """Per class: ground-truth characters and how many were misread or dropped; the Hangul part counts;
    the confusions (gt, pred) of every non-matching aligned pair."""
    per_class = {c: {"chars": 0, "errors": 0} for c in CLASSES}
    hangul = {"syllables_misread": 0, **{p: 0 for p in PARTS}, "read_as_other": 0, "dropped": 0}
    confusions: Counter = Counter()
    for r in readings:
        for g, p in align(r.gt, r.pred):
            if g != GAP and g != " ":
                cls = per_class[char_class(g)]
                cls["chars"] += 1
                cls["errors"] += g != p
            if g == p or (g == " " and p == GAP) or (g == GAP and p == " "):
                continue
            confusions[(g, p)] += 1
            parts_g = jamo(g) if g != GAP else None
            if parts_g is None:
                continue
            parts_p = jamo(p) if p != GAP else None
            if p == GAP:
                hangul["dropped"] += 1
            elif parts_p is None:
                hangul["read_as_other"] += 1
            else:
                hangul["syllables_misread"] += 1
                for name, a, b in zip(PARTS, parts_g, parts_p, strict=True):
                    hangul[name] += a != b
    for cls in per_class.values():
        cls["error_rate"] = cls["errors"] / cls["chars"] if cls["chars"] else None
    return per_class, hangul, confusions


def analyse(
    readings: Sequence[Reading], *, title: str = "", top: int = 20, worst: int = 12
) -> dict[str, Any]:
    """The report as plain data; ``worst`` lists sample indexes so a renderer can show their images."""
    per_class, hangul, confusions = char_errors(readings)
    ranked = sorted(
        range(len(readings)),
        key=lambda i: (norm_ed_one(readings[i].gt, readings[i].pred), i),  # least similar first
    )
    wrong = [i for i in ranked if readings[i].pred != readings[i].gt][:worst]
    return {
        "title": title,
        "overall": figures(readings),
        "per_font": grouped(readings, lambda r: r.font or "-"),
        "per_length": grouped(readings, lambda r: length_bucket(r.gt)),
        "per_text_class": grouped(readings, lambda r: text_class(r.gt)),
        "per_class": {c: v for c, v in per_class.items() if v["chars"]},
        "hangul": hangul,
        "confusions": [
            {"gt": g, "pred": p, "count": n}
            for (g, p), n in sorted(confusions.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        ],
        "worst": [
            {
                "index": i,
                "gt": readings[i].gt,
                "pred": readings[i].pred,
                "other": readings[i].other,
                "font": readings[i].font,
            }
            for i in wrong
        ],
    }


def analyse_benchmark(
    bench: Benchmark, reader: Sequence[str], ocrtune: Sequence[str] | None = None, title: str = ""
) -> dict[str, Any]:
    """The report of Reader's readings of a benchmark set (ocrtune's beside them, when given)."""
    rows = [
        Reading(label, reader[i], bench.font(i), None if ocrtune is None else ocrtune[i])
        for i, (_, label) in enumerate(bench.samples)
    ]
    return analyse(rows, title=title or bench.id)


def against_base(bench: Benchmark, model: Sequence[str], base: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Word accuracy per kind of text, the model's beside its base model's on the same set: a fine-tune
    must win in every kind, not only overall (one that lowercases everything wins on lowercase words)."""
    labels = [label for _, label in bench.samples]
    ours = grouped([Reading(g, p) for g, p in zip(labels, model, strict=True)], lambda r: text_class(r.gt))
    theirs = grouped([Reading(g, p) for g, p in zip(labels, base, strict=True)], lambda r: text_class(r.gt))
    return {
        k: {"samples": v["samples"], "model": v["word_acc"], "base": theirs[k]["word_acc"]}
        for k, v in ours.items()
    }


# ---- rendering -----------------------------------------------------------------------------------------
def _group_rows(groups: dict[str, dict[str, Any]]) -> list[list[Any]]:
    return [[k, v["samples"], v["word_acc"], v["cer"], v["norm_ed"]] for k, v in groups.items()]


def _class_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[c, v["chars"], v["errors"], v["error_rate"]] for c, v in report["per_class"].items()]


def _hangul_line(h: dict[str, Any]) -> str:
    return (
        f"{h['syllables_misread']} syllables read as another syllable: initial consonant wrong in "
        f"{h['initial']}, vowel in {h['vowel']}, final consonant in {h['final']}; "
        f"{h['read_as_other']} read as a non-Hangul character, {h['dropped']} dropped"
    )


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v).replace("|", "\\|"))

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows),
        "",
    ]


def markdown(report: dict[str, Any]) -> str:
    o = report["overall"]
    lines = [
        f"# Error report{': ' + report['title'] if report['title'] else ''}",
        "",
        f"{o['samples']} samples: word accuracy {o['word_acc']:.4f}, CER {o['cer']:.4f}, "
        f"norm_ED {o['norm_ed']:.4f}",
        "",
        "## Per typeface",
        *_md_table(["font", "samples", "word_acc", "cer", "norm_ed"], _group_rows(report["per_font"])),
        "## Per word length (characters)",
        *_md_table(["length", "samples", "word_acc", "cer", "norm_ed"], _group_rows(report["per_length"])),
        "## Per kind of text",
        *_md_table(["kind", "samples", "word_acc", "cer", "norm_ed"], _group_rows(report["per_text_class"])),
        "## Per character class",
        *_md_table(["class", "characters", "misread or dropped", "error rate"], _class_rows(report)),
        *(
            ["## Hangul syllables", _hangul_line(report["hangul"]), ""]
            if "hangul" in report["per_class"]
            else []
        ),
        "## Top confusions (ground truth -> read)",
        *_md_table(["gt", "read", "count"], [[c["gt"], c["pred"], c["count"]] for c in report["confusions"]]),
        "## Worst samples",
        *_md_table(
            ["#", "font", "ground truth", "easyocr.Reader", "ocrtune"],
            [[w["index"], w["font"], w["gt"], w["pred"], w["other"]] for w in report["worst"]],
        ),
    ]
    return "\n".join(lines).rstrip() + "\n"


def html_body(report: dict[str, Any], image: Callable[[int], bytes] | None = None) -> list[str]:
    """The report's sections as HTML (for a page of its own or inside the evaluation view)."""
    o = report["overall"]
    worst = [
        [
            img(image(w["index"]), w["gt"], 32) if image else "",
            esc(w["font"] or "-"),
            esc(w["gt"]),
            f'<span class="bad">{esc(w["pred"])}</span>',
            esc("-" if w["other"] is None else w["other"]),
        ]
        for w in report["worst"]
    ]
    return [
        f"<p>{o['samples']} samples: word accuracy {fig(o['word_acc'])}, CER {fig(o['cer'])}, "
        f"norm_ED {fig(o['norm_ed'])}</p>",
        "<h2>Per typeface</h2>",
        table(["font", "samples", "word_acc", "cer", "norm_ed"], _fig_rows(_group_rows(report["per_font"]))),
        "<h2>Per word length (characters)</h2>",
        table(
            ["length", "samples", "word_acc", "cer", "norm_ed"], _fig_rows(_group_rows(report["per_length"]))
        ),
        "<h2>Per kind of text</h2>",
        table(
            ["kind", "samples", "word_acc", "cer", "norm_ed"],
            _fig_rows(_group_rows(report["per_text_class"])),
        ),
        "<h2>Per character class</h2>",
        table(["class", "characters", "misread or dropped", "error rate"], _fig_rows(_class_rows(report))),
        *(
            ["<h2>Hangul syllables</h2>", f"<p>{esc(_hangul_line(report['hangul']))}</p>"]
            if "hangul" in report["per_class"]
            else []
        ),
        "<h2>Top confusions (ground truth &rarr; read)</h2>",
        table(
            ["ground truth", "read", "count"],
            [[esc(c["gt"]), esc(c["pred"]), c["count"]] for c in report["confusions"]],
            2,
        ),
        "<h2>Worst samples</h2>",
        table(["image", "font", "ground truth", "easyocr.Reader", "ocrtune"], worst, 5),
    ]


def _fig_rows(rows: list[list[Any]]) -> list[list[str]]:
    return [[esc(r[0]), *(fig(v) for v in r[1:])] for r in rows]


def html(report: dict[str, Any], image: Callable[[int], bytes] | None = None) -> str:
    title = f"Error report{': ' + report['title'] if report['title'] else ''}"
    return page(title, html_body(report, image))


def write_report(
    out: str | Path, report: dict[str, Any], image: Callable[[int], bytes] | None = None
) -> Path:
    """``report.json``, ``report.md`` and ``report.html`` in ``out`` (replaced whole, never half-written)."""
    out = Path(out)
    with staged_dir(out, overwrite=True) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")
        (tmp / "report.md").write_text(markdown(report), "utf-8")
        (tmp / "report.html").write_text(html(report, image), "utf-8")
    return out

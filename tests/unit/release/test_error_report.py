"""The error report: alignment, Hangul jamo arithmetic, the per-class / per-length / per-font tables, the
confusions, the three files, and `ocrtune evaluate --report` on the real english_g2 export."""

from __future__ import annotations

import json

import pytest
from support.cli import run_cli
from support.english_models import WORDS, export_english, make_benchmark

from ocrtune.release import error_report
from ocrtune.release.error_report import (
    GAP,
    Reading,
    against_base,
    align,
    analyse,
    char_class,
    jamo,
    text_class,
)
from ocrtune.release.frozen_benchmark import load_benchmark


def test_align_tells_substitutions_from_deletions_and_insertions():
    assert align("은행", "를행") == [("은", "를"), ("행", "행")]
    assert align("abc", "ac") == [("a", "a"), ("b", GAP), ("c", "c")]
    assert align("ac", "abc") == [("a", "a"), (GAP, "b"), ("c", "c")]
    assert align("", "ab") == [(GAP, "a"), (GAP, "b")] and align("ab", "") == [("a", GAP), ("b", GAP)]


def test_jamo_is_arithmetic_on_the_code_point():
    # 은 = ㅇ + ㅡ + ㄴ, 를 = ㄹ + ㅡ + ㄹ, 가 = ㄱ + ㅏ (no final), 힣 the last syllable
    assert jamo("은") == (11, 18, 4) and jamo("를") == (5, 18, 8)
    assert jamo("가") == (0, 0, 0) and jamo("힣") == (18, 20, 27)
    assert jamo("a") is None and jamo("ㄱ") is None


def test_character_classes():
    assert [char_class(c) for c in "한A7.ㄱé"] == [
        "hangul",
        "latin",
        "digit",
        "punctuation",
        "hangul",
        "other",
    ]


@pytest.mark.parametrize(
    "text, kind",
    [
        ("한국", "hangul"),
        ("hello", "lower"),
        ("Hello", "Capitalised"),
        ("HELLO", "UPPER"),
        ("iPhone", "other"),
        ("1,234", "number"),
        ("12,300원", "number"),
        ("010-1234-5678", "number"),
        ("2026-12-03", "date"),
        ("March 4, 2021", "date"),
        ("2026년 3월 4일", "date"),
        ("12:30", "date"),
        ("How are you?", "phrase"),
        ("안녕 하세요", "phrase"),
    ],
)
def test_kinds_of_text(text, kind):
    assert text_class(text) == kind


def test_against_base_per_kind_of_text(tmp_path):
    bench = load_benchmark(make_benchmark(tmp_path / "b", words=["Hello", "world", "2026", "OK"]))
    kinds = against_base(bench, ["Hello", "world", "2026", "0K"], ["hello", "world", "2026", "OK"])
    assert kinds == {
        "Capitalised": {"samples": 1, "model": 1.0, "base": 0.0},
        "UPPER": {"samples": 1, "model": 0.0, "base": 1.0},
        "lower": {"samples": 1, "model": 1.0, "base": 1.0},
        "number": {"samples": 1, "model": 1.0, "base": 1.0},
    }


def test_which_part_of_a_syllable_was_misread():
    rows = [
        Reading("은", "를"),  # initial and final differ, vowel kept
        Reading("가", "거"),  # vowel only
        Reading("각", "가"),  # final only
        Reading("나", "L"),  # read as a non-Hangul character
        Reading("다라", "다"),  # one dropped
    ]
    h = analyse(rows)["hangul"]
    assert h == {
        "syllables_misread": 3,
        "initial": 1,
        "vowel": 1,
        "final": 2,
        "read_as_other": 1,
        "dropped": 1,
    }


def test_tables_confusions_and_worst():
    rows = [
        Reading("은행", "를행", "F1", "은행"),
        Reading("은행", "를행", "F2", "를행"),
        Reading("Hello 3", "Hello 8", "F1"),
        Reading("국", "국", "F2"),
    ]
    rep = analyse(rows, title="t", worst=2)
    assert rep["overall"]["samples"] == 4 and rep["overall"]["word_acc"] == 0.25
    assert rep["per_font"]["F2"]["word_acc"] == 0.5 and rep["per_font"]["F1"]["samples"] == 2
    assert set(rep["per_length"]) == {"1", "2", "6-8"}  # "Hello 3": six characters without the space
    assert rep["per_class"]["hangul"] == {"chars": 5, "errors": 2, "error_rate": 0.4}
    assert rep["per_class"]["digit"]["errors"] == 1 and rep["per_class"]["latin"]["errors"] == 0
    assert rep["confusions"][0] == {"gt": "은", "pred": "를", "count": 2}
    assert [w["index"] for w in rep["worst"]] == [0, 1]  # least similar first, correct ones never
    assert rep["worst"][0]["other"] == "은행"


def test_the_three_files_and_nothing_half_written(tmp_path):
    rep = analyse([Reading("은행", "를행", "F1"), Reading("가", "가", "F1")], title="demo")
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    out = error_report.write_report(tmp_path / "report", rep, lambda i: png)
    assert sorted(p.name for p in out.iterdir()) == sorted(error_report.REPORT_FILES)
    assert json.loads((out / "report.json").read_text("utf-8")) == json.loads(json.dumps(rep))
    md = (out / "report.md").read_text("utf-8")
    assert "| 은 | 를 | 1 |" in md and "## Per character class" in md
    assert "## Hangul syllables" in md and "Hangul syllables" not in error_report.markdown(
        analyse([Reading("cat", "cot")])
    )  # no Hangul, no Hangul section
    page = (out / "report.html").read_text("utf-8")
    assert "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")
    with pytest.raises(ZeroDivisionError):  # a renderer failing mid-way leaves the old report whole
        error_report.write_report(out, rep, lambda i: 1 / 0)
    assert (out / "report.md").read_text("utf-8") == md


def test_cli_writes_the_report_of_a_real_export(tmp_path):
    model = export_english(tmp_path / "custom")
    bench = make_benchmark(tmp_path / "bench")
    res = run_cli(
        "evaluate",
        str(model),
        "--data",
        str(bench),
        "--report",
        str(tmp_path / "rep"),
        "--no-check",
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "error report: " in res.stdout
    rep = json.loads((tmp_path / "rep" / "report.json").read_text("utf-8"))
    assert rep["overall"]["samples"] == len(WORDS)
    assert rep["per_class"]["latin"]["chars"] > 0 and rep["per_class"]["digit"]["chars"] > 0
    html = (tmp_path / "rep" / "report.html").read_text("utf-8")
    assert html.count("data:image/") == len(rep["worst"])
    bad = run_cli("evaluate", str(model), "--data", str(bench), "--mlflow-run", "abc")
    assert bad.returncode == 2 and "give --report DIR too" in bad.stderr

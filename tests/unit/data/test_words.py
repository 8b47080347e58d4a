"""Word sources: UTF-8 errors name the line, empty lists refused, charset filtering counted, coverage K."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ocrtune.charsets import is_hangul, load_charset
from ocrtune.data.words import (
    KINDS,
    WordStats,
    coverage_words,
    filter_charset,
    load_sources,
    make_text,
    partition,
    read_word_file,
    wordfreq_words,
)
from ocrtune.errors import UserError
from ocrtune.release.error_report import text_class

KO = load_charset("korean_g2")


def test_word_file_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "words.txt"
    p.write_bytes("사과\n바나나\n".encode() + "café\n".encode("latin-1") + "포도\n".encode())
    with pytest.raises(UserError, match=r"line 3 is not UTF-8") as exc:
        read_word_file(p)
    assert "\n" not in str(exc.value)


def test_word_file_euc_kr_names_the_first_bad_line(tmp_path):
    p = tmp_path / "words.txt"
    p.write_bytes(b"hello\n" + "한국어\n".encode("euc-kr"))
    with pytest.raises(UserError, match=r"words.txt: line 2 is not UTF-8"):
        read_word_file(p)


def test_word_file_entries_trimmed_blank_lines_skipped(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("\ufeff사과\r\n\n  바나나   우유 \n\n", encoding="utf-8")
    assert read_word_file(p) == ["사과", "바나나 우유"]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_empty_word_file_is_an_error(tmp_path, content):
    p = tmp_path / "words.txt"
    p.write_bytes(content)
    with pytest.raises(UserError, match="no entries"):
        read_word_file(p)


def test_word_list_with_nothing_in_the_charset_is_an_error(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("中文\n日本語\n", encoding="utf-8")
    with pytest.raises(UserError, match="empty word list"):
        load_sources(KO, p, wordfreq_top=0)


def test_out_of_charset_entries_dropped_and_counted():
    stats = WordStats()
    kept = filter_charset(["가나", "abc", "가☃", "中文", "가나"], KO, stats, "user")
    assert kept == ["가나", "abc"]
    assert stats.sources["user"] == {"kept": 2, "dropped": 2}
    assert stats.out_of_charset == Counter({"☃": 1, "中": 1, "文": 1})
    assert stats.to_dict()["out_of_charset_total"] == 3


def test_sources_user_words_and_wordfreq_offline(tmp_path):
    p = tmp_path / "words.txt"
    p.write_text("손글씨\n필기체 연습\n漢字\n", encoding="utf-8")
    src = load_sources(KO, p, wordfreq_top=500)
    assert src.korean[:2] == ["손글씨", "필기체 연습"]
    assert len(src.korean) > 300  # wordfreq's Korean list ships with the package
    assert all(set(w) <= set(KO) for w in src.korean + src.latin)
    assert src.stats.sources["user"]["dropped"] == 1
    assert src.stats.out_of_charset["漢"] == 1
    assert len(wordfreq_words(50)) == 50


def test_coverage_sampler_brings_every_char_to_k():
    rng = random.Random(1)
    have = Counter("".join(["가나다", "사과", "hello"] * 5))
    words, uncoverable = coverage_words(KO, 3, rng, have)
    assert uncoverable == []
    total = have + Counter("".join(words))
    assert min(total[c] for c in KO) >= 3
    hangul = [w for w in words if any(is_hangul(c) for c in w)]
    assert all(2 <= len(w) <= 6 and all(is_hangul(c) for c in w) for w in hangul)
    assert all(w == w.strip() and "  " not in w for w in words)
    # already covered characters are not padded further than needed
    assert sum(len(w) for w in words) < 3 * len(KO) + 6 * len(words)


def test_coverage_respects_what_fonts_draw():
    rng = random.Random(2)
    syllables = [c for c in KO if is_hangul(c)]
    font_a, font_b = set(syllables[:400]), set(syllables[300:800])  # 113 syllables drawn by neither
    words, uncoverable = coverage_words(KO, 2, rng, drawable=[font_a, font_b])
    assert set(uncoverable) == set(KO) - font_a - font_b
    assert all(set(w) <= font_a or set(w) <= font_b for w in words)
    total = Counter("".join(words))
    assert all(total[c] >= 2 for c in font_a | font_b)


def test_partition_is_disjoint_stable_and_complete():
    words = [f"w{i}" for i in range(1000)]
    parts = partition(words, {"train": 8, "val": 1, "test": 1}, seed=3)
    assert sorted(sum(parts.values(), [])) == sorted(words)
    assert not set(parts["train"]) & set(parts["test"])
    assert 50 < len(parts["test"]) < 150
    again = partition(list(reversed(words)), {"train": 8, "val": 1, "test": 1}, seed=3)
    assert set(again["test"]) == set(parts["test"])


def test_generated_kinds_stay_in_the_charset():
    rng = random.Random(4)
    korean, latin = ["사과", "바나나", "우유"], ["apple", "milk"]
    for kind in KINDS:
        texts = [make_text(kind, rng, korean, latin) for _ in range(200)]
        assert all(t and set(t) <= set(KO) for t in texts), kind
    assert any(" " in make_text("phrase", rng, korean, latin) for _ in range(20))


def test_english_text_is_written_as_people_write_it():
    """An English word list gets cased words, punctuated phrases and English dates; a lowercase list
    alone would teach a model to lowercase everything."""
    rng = random.Random(1)
    english = ["river", "garden", "table", "music", "window", "silver"]
    kinds = {k: [make_text(k, rng, english, english, latin_script=True) for _ in range(400)] for k in KINDS}
    classes = Counter(text_class(t) for t in kinds["word"])
    assert classes["lower"] > classes["Capitalised"] > classes["UPPER"] > 0 and set(classes) <= {
        "lower",
        "Capitalised",
        "UPPER",
    }
    phrases = kinds["phrase"]
    assert all(text_class(p) == "phrase" and p[0].isupper() for p in phrases)
    assert any(p[-1] in ".!?" for p in phrases) and any("," in p for p in phrases)
    dates = kinds["date"]
    assert all(text_class(d) == "date" for d in dates) and not any("년" in d or "월" in d for d in dates)
    assert any(m in d for d in dates for m in ("January", "Dec", "May"))
    # a Korean list keeps its words as they are
    korean = ["사과", "나무"]
    assert {make_text("word", rng, korean, english) for _ in range(50)} <= set(korean)

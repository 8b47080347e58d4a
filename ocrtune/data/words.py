"""What text gets rendered: word lists, generated digits/dates/Latin/phrases, and charset coverage.

A recognizer never learns a character it never sees, and frequency lists leave hundreds of korean_g2's 913
syllables out; the coverage sampler adds synthetic strings until every character appears K times. Entries
with characters outside the charset are dropped and counted, never silently mangled.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import wordfreq

from ocrtune.charsets import is_hangul
from ocrtune.errors import UserError

KINDS = ("word", "phrase", "digits", "date", "latin")
CAPITALISED, UPPER = 0.3, 0.1  # shares of Latin words written Capitalised and UPPER
MONTHS = "January February March April May June July August September October November December".split()


@dataclass(frozen=True)
class WordMix:
    """Share of each kind of text among the non-coverage samples (normalised, need not sum to 1)."""

    word: float = 0.70
    phrase: float = 0.10
    digits: float = 0.08
    date: float = 0.04
    latin: float = 0.08

    def weights(self) -> dict[str, float]:
        w = {k: float(getattr(self, k)) for k in KINDS}
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise UserError(f"word mix must be non-negative with a positive sum, got {w}")
        return w


@dataclass
class WordStats:
    """What happened to the entries of each source: kept, dropped, and which characters were outside."""

    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    out_of_charset: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {
            "sources": self.sources,
            "out_of_charset_chars": dict(self.out_of_charset.most_common()),
            "out_of_charset_total": sum(self.out_of_charset.values()),
        }


def read_word_file(path: str | Path) -> list[str]:
    """Entries of a UTF-8 word file, one a line (blank lines skipped); other encodings name the line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read word file ({exc.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    entries = []
    for n, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path}: line {n} is not UTF-8 (byte {exc.start + 1} of the line); save the file as UTF-8"
            ) from None
        text = " ".join(text.split())
        if text:
            entries.append(text)
    if not entries:
        raise UserError(f"{path}: word file has no entries")
    return entries


def wordfreq_words(n: int, lang: str = "ko") -> list[str]:
    """The n most frequent words of ``lang`` from wordfreq (its data ships with the package: offline)."""
    if n <= 0:
        return []
    return [" ".join(w.split()) for w in wordfreq.top_n_list(lang, n) if w.strip()]


def filter_charset(entries: Iterable[str], charset: str, stats: WordStats, source: str) -> list[str]:
    """Entries made only of charset characters (deduplicated, order kept); the others dropped and counted."""
    allowed = set(charset)
    kept, seen, dropped = [], set(), 0
    for entry in entries:
        bad = [c for c in entry if c not in allowed]
        if bad:
            dropped += 1
            stats.out_of_charset.update(bad)
            continue
        if entry not in seen:
            seen.add(entry)
            kept.append(entry)
    s = stats.sources.setdefault(source, {"kept": 0, "dropped": 0})
    s["kept"] += len(kept)
    s["dropped"] += dropped
    return kept


@dataclass
class WordSources:
    """The filtered lists the sampler draws from."""

    korean: list[str]
    latin: list[str]
    stats: WordStats


def load_sources(
    charset: str, words_file: str | Path | None = None, wordfreq_top: int = 5000, wordfreq_lang: str = "ko"
) -> WordSources:
    """User words + wordfreq's list of ``wordfreq_lang`` (+ English for Latin words), filtered to the charset."""
    stats = WordStats()
    korean: list[str] = []
    if words_file:
        korean += filter_charset(read_word_file(words_file), charset, stats, "user")
    korean += filter_charset(wordfreq_words(wordfreq_top, wordfreq_lang), charset, stats, "wordfreq")
    korean = list(dict.fromkeys(korean))
    if not korean:
        where = f" ({words_file} and wordfreq top {wordfreq_top})" if words_file else ""
        raise UserError(f"empty word list: no entry is made of characters of the charset{where}")
    latin = [w for w in wordfreq_words(3000, "en") if w.isascii() and w.isalpha()]
    latin = filter_charset(latin, charset, stats, "latin")
    return WordSources(korean=korean, latin=latin, stats=stats)


def partition(words: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Split words into disjoint parts by a stable hash: the same word always lands in the same part."""
    names = list(fractions)
    total = sum(fractions.values()) or 1.0
    bounds, acc = [], 0.0
    for name in names:
        acc += fractions[name] / total
        bounds.append(acc)
    parts: dict[str, list[str]] = {n: [] for n in names}
    for w in words:
        h = int.from_bytes(hashlib.sha1(f"{seed}\0{w}".encode()).digest()[:8], "big") / 2**64
        for name, b in zip(names, bounds, strict=True):
            if h < b or name == names[-1]:
                parts[name].append(w)
                break
    return parts


def _digits(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.35:
        return str(rng.randint(0, 10 ** rng.randint(1, 6)))
    if r < 0.55:
        return f"{rng.randint(1000, 9_999_999):,}"
    if r < 0.70:
        return f"{rng.uniform(0, 1000):.{rng.randint(1, 2)}f}"
    if r < 0.80:
        return f"{rng.randint(0, 100)}%"
    if r < 0.90:
        return f"010-{rng.randint(0, 9999):04d}-{rng.randint(0, 9999):04d}"
    return f"{rng.randint(1, 999) * 100:,}원"


def _date(rng: random.Random, latin_script: bool = False) -> str:
    y, m, d = rng.randint(1950, 2035), rng.randint(1, 12), rng.randint(1, 28)
    if latin_script:  # how dates are written in English: month names, day/month order both ways
        month = MONTHS[m - 1]
        return rng.choice(
            [
                f"{y}-{m:02d}-{d:02d}",
                f"{m}/{d}/{y}",
                f"{d:02d}/{m:02d}/{y}",
                f"{month} {d}, {y}",
                f"{d} {month} {y}",
                f"{month[:3]} {d}",
                f"{m:02d}:{rng.randint(0, 59):02d}",
            ]
        )
    return rng.choice(
        [
            f"{y}-{m:02d}-{d:02d}",
            f"{y}.{m:02d}.{d:02d}",
            f"{y}/{m}/{d}",
            f"{y}. {m}. {d}.",
            f"{y}년 {m}월 {d}일",
            f"{m}월 {d}일",
            f"{y}년 {m}월",
            f"{m:02d}:{rng.randint(0, 59):02d}",
        ]
    )


def cased(word: str, rng: random.Random) -> str:
    """A Latin word as people write it: mostly lowercase, often Capitalised, sometimes UPPER (a list of
    lowercase words alone teaches a model to lowercase everything)."""
    if not (word.isascii() and word.isalpha()):
        return word
    r = rng.random()
    return word.capitalize() if r < CAPITALISED else (word.upper() if r < CAPITALISED + UPPER else word)


def _latin_phrase(rng: random.Random, words: Sequence[str]) -> str:
    """Two to four words, the first Capitalised, punctuation where a hand puts it."""
    picked = [rng.choice(words) for _ in range(rng.randint(2, 4))]
    picked[0] = picked[0].capitalize()
    picked = [
        w + (rng.choice(",;:") if i < len(picked) - 1 and rng.random() < 0.15 else "")
        for i, w in enumerate(picked)
    ]
    return " ".join(picked) + rng.choice(["", "", ".", ".", "!", "?"])


def make_text(
    kind: str, rng: random.Random, korean: Sequence[str], latin: Sequence[str], latin_script: bool = False
) -> str:
    """One text of a kind; ``korean``/``latin`` are the word lists of the split being sampled.
    ``latin_script``: the main word list is Latin-script (English): its words get cased, its phrases
    punctuated, its dates written the English way."""
    if kind == "word" or (kind == "latin" and not latin):
        return cased(rng.choice(korean), rng) if latin_script else rng.choice(korean)
    if kind == "phrase":
        if latin_script:
            return _latin_phrase(rng, korean)
        return " ".join(rng.choice(korean) for _ in range(rng.randint(2, 3)))
    if kind == "digits":
        return _digits(rng)
    if kind == "date":
        return _date(rng, latin_script)
    if kind == "latin":
        return cased(rng.choice(latin), rng)
    raise ValueError(f"unknown text kind {kind!r}")


def coverage_words(
    chars: str,
    k: int,
    rng: random.Random,
    counts: Counter | None = None,
    drawable: Sequence[set[str]] | None = None,
    min_len: int = 2,
    max_len: int = 6,
) -> tuple[list[str], list[str]]:
    """Synthetic strings that bring every character of ``chars`` to at least ``k`` occurrences.

    ``counts`` are occurrences already planned; ``drawable`` the character sets of the fonts that may render
    them (each string is drawable by at least one font). Returns (strings, characters no font draws).
    Hangul syllables are grouped into 2-6 syllable strings, other characters into short strings of their own.
    """
    counts = Counter(counts or {})
    sets = list(drawable) if drawable else [set(chars)]
    need = {c: k - counts[c] for c in chars if counts[c] < k}
    uncoverable = sorted(c for c in need if not any(c in s for s in sets))
    for c in uncoverable:
        del need[c]
    order = list(need)
    rng.shuffle(order)
    out: list[str] = []
    while order:
        c = order[-1]
        if need.get(c, 0) <= 0:
            order.pop()
            continue
        hangul = is_hangul(c)
        font_set = rng.choice([s for s in sets if c in s])
        length = rng.randint(min_len, max_len)
        pending = [
            x
            for x in need
            if need[x] > 0 and x != c and x != " " and is_hangul(x) == hangul and x in font_set
        ]
        picked = [c, *rng.sample(pending, min(length - 1, len(pending)))]
        if len(picked) < length:
            fill = sorted(x for x in font_set if is_hangul(x) == hangul and x != " " and x in chars)
            picked += [rng.choice(fill) for _ in range(length - len(picked))] if fill else []
        if c == " ":
            picked.remove(" ")
            if len(picked) < 2:
                filler = sorted(x for x in font_set if x != " " and x in chars) or ["."]
                picked += [rng.choice(filler) for _ in range(2 - len(picked))]
            rng.shuffle(picked)
            text = picked[0] + " " + "".join(picked[1:])
        else:
            rng.shuffle(picked)
            text = "".join(picked)
        for x in text:
            if x in need:
                need[x] -= 1
        out.append(text)
    return out, uncoverable

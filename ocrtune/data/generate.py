"""``ocrtune data generate``: words + fonts -> train/val/test crops in the gt.txt layout, with a card.

The plan (which text, which font, which split) is made up front in one process from the seed, and every
image is a pure function of (seed, split, index, text, font): the dataset is the same for any number of
workers. Test fonts never appear in train/val ("unseen handwriting") and test words are drawn from a part
of the word list train never uses. Everything is written into a hidden temp dir beside OUT and renamed at
the end, so Ctrl-C or a full disk never leaves an OUT that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import random
import shutil
import signal
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from ocrtune import __version__
from ocrtune.charsets import load_charset
from ocrtune.config import DataConfig
from ocrtune.data.card import write_card
from ocrtune.data.fonts import face_of, load_fonts
from ocrtune.data.glyphs import drawn_chars
from ocrtune.data.gt_layout import GT_FILE, IMAGES_DIR, SAMPLES_FILE
from ocrtune.data.render import BACKGROUNDS, Renderer, RenderError, RenderOptions, sample_rng
from ocrtune.data.trdg_backend import render_with_trdg
from ocrtune.data.words import WordMix, WordSources, coverage_words, load_sources, make_text, partition
from ocrtune.errors import UserError
from ocrtune.files import staged_dir

SPLITS = ("train", "val", "test")
CHUNK = 64


@dataclass
class Sample:
    split: str
    index: int  # within the split: images/image_%06d
    text: str
    font: str  # font name
    source: str  # word | phrase | digits | date | latin | coverage


@dataclass
class Plan:
    samples: dict[str, list[Sample]]
    split: dict  # what split.json records
    stats: dict = field(default_factory=dict)


def _font_choice(
    text: str, fonts: Sequence[str], drawn: dict[str, frozenset], rng: random.Random
) -> str | None:
    chars = set(text)
    ok = [f for f in fonts if chars <= drawn[f]]
    return rng.choice(ok) if ok else None


def _hold_out_fonts(
    cfg: DataConfig, n_test: int, usable: list[str], faces: dict[str, str] | None, rng: random.Random
) -> tuple[list[str], list[str]]:
    """(train/val fonts, test fonts): the test split holds out whole typefaces, drawn by ``rng``."""
    n_test_fonts = cfg.test_fonts if n_test > 0 else 0
    face_of = {n: (faces or {}).get(n, n) for n in usable}
    all_faces = sorted(set(face_of.values()))
    if n_test_fonts and len(all_faces) <= n_test_fonts:
        raise UserError(
            f"{len(all_faces)} usable typeface(s) cannot hold out {n_test_fonts} for the test split and still "
            "train (fetch more fonts, or set data.test_fonts lower)"
        )
    test_faces = set(rng.sample(all_faces, n_test_fonts)) if n_test_fonts else set()
    test_fonts = sorted(n for n in usable if face_of[n] in test_faces)
    train_fonts = [n for n in usable if n not in test_fonts]
    return train_fonts, test_fonts


def _word_parts(
    sources: WordSources, counts: dict[str, int], seed: int
) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """Disjoint parts of each word list per split (by a stable hash), and the ``kind:split`` lists that were
    too short to split and are shared whole."""
    fractions = {s: counts[s] for s in SPLITS if counts[s] > 0}
    parts = {
        "korean": partition(sources.korean, fractions, seed),
        "latin": partition(sources.latin, fractions, seed),
    }
    shared = []
    for kind, p in parts.items():
        for s in fractions:
            if not p[s]:  # too few words to split: share the whole list and say so
                p[s] = list(getattr(sources, kind))
                shared.append(f"{kind}:{s}")
    return parts, shared


@dataclass
class _TextDrawer:
    """Draws (text, font, kind) rows for a split from the plan's one ``rng``, in a fixed order of draws."""

    rng: random.Random
    charset: frozenset
    mix: WordMix
    parts: dict[str, dict[str, list[str]]]
    split_fonts: dict[str, list[str]]
    drawn: dict[str, frozenset]
    shared: list[str]
    skipped: Counter = field(default_factory=Counter)
    used: set[str] = field(default_factory=set)  # texts of the splits drawn before: train, then val

    def __post_init__(self) -> None:
        weights = self.mix.weights()  # a bad mix fails here, before anything is drawn
        self._kinds, self._kw = list(weights), list(weights.values())
        main = [w for split in self.parts["korean"].values() for w in split[:200]]
        self._latin_script = bool(main) and all(w.isascii() for w in main)  # an English word list

    def __call__(self, split: str, n: int) -> list[tuple[str, str, str]]:
        kinds, kw = self._kinds, self._kw
        out = []
        korean, latin = self.parts["korean"][split], self.parts["latin"][split]
        fonts = self.split_fonts[split]
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise UserError(f"cannot find {n} {split} texts that the {split} fonts draw")
            kind = self.rng.choices(kinds, kw)[0]
            text = make_text(kind, self.rng, korean, latin, self._latin_script)
            if not set(text) <= self.charset:
                self.skipped[f"{kind}: text outside the charset"] += 1
                continue
            if split != "train" and text in self.used and not self.shared:  # keep val/test texts unseen
                continue
            font = _font_choice(text, fonts, self.drawn, self.rng)
            if font is None:
                self.skipped[f"{kind}: no {split} font draws every character"] += 1
                continue
            out.append((text, font, kind))
        return out


def _train_rows(
    cfg: DataConfig, charset: str, n: int, draw: _TextDrawer, train_fonts: list[str]
) -> tuple[list[tuple[str, str, str]], int, list[str]]:
    """(shuffled train rows, coverage strings planned, uncoverable characters): the word mix plus coverage
    strings so that every charset character appears ``coverage_min`` times."""
    rng, drawn = draw.rng, draw.drawn
    mixed = draw("train", n)
    cov: list[str] = []
    uncoverable: list[str] = []
    if cfg.coverage_min > 0:
        train_sets = [drawn[f] for f in train_fonts]
        for _ in range(20):
            have = Counter("".join(t for t, _, _ in mixed))
            cov, uncoverable = coverage_words(charset, cfg.coverage_min, rng, have, train_sets)
            if len(cov) > n:
                raise UserError(
                    f"--count {n} is too small to show each of the {len(charset)} charset characters "
                    f"{cfg.coverage_min} times (needs about {len(cov)}): raise --count or lower coverage_min"
                )
            if len(mixed) + len(cov) <= n:
                break
            mixed = mixed[: n - len(cov)]
        mixed += draw("train", max(0, n - len(mixed) - len(cov)))
    rows = mixed + [(t, f, "coverage") for t in cov if (f := _font_choice(t, train_fonts, drawn, rng))]
    rng.shuffle(rows)
    return rows, len(cov), uncoverable


def _split_info(
    cfg: DataConfig,
    samples: dict[str, list[Sample]],
    train_fonts: list[str],
    test_fonts: list[str],
    shared: list[str],
) -> dict:
    """What split.json records: the fonts and words of each split and how much they overlap."""
    texts = {s: {x.text for x in samples[s]} for s in SPLITS}
    return {
        "seed": cfg.seed,
        "by": ["font", "word"],
        "fonts": {s: sorted({x.font for x in samples[s]}) for s in SPLITS},
        "font_pool": {"train_val": train_fonts, "test": test_fonts or train_fonts},
        "test_fonts_held_out": test_fonts,
        "test_fonts_unseen": bool(test_fonts),
        "words_shared_between_splits": shared,
        "overlap": {
            "test_train_texts": len(texts["test"] & texts["train"]),
            "val_train_texts": len(texts["val"] & texts["train"]),
            "test_val_texts": len(texts["test"] & texts["val"]),
        },
        "counts": {s: len(samples[s]) for s in SPLITS},
    }


def make_plan(
    cfg: DataConfig,
    charset: str,
    sources: WordSources,
    drawn: dict[str, frozenset],
    mix: WordMix,
    faces: dict[str, str] | None = None,
) -> Plan:
    """Decide every sample: text, font and split. ``drawn`` maps font name -> characters it really draws.

    ``faces`` maps font name -> typeface: the test split holds out whole faces, so the same hand shipped
    twice (Debian's and npm's Nanum Pen, a regular and a bold) never sits on both sides of the split. One
    ``rng`` seeded by ``cfg.seed`` makes every choice, in this order: test faces, train, val, test.
    """
    rng = random.Random(f"ocrtune-plan:{cfg.seed}")
    counts = {"train": cfg.train_count, "val": cfg.val_count, "test": cfg.test_count}
    names = sorted(drawn)
    usable = [n for n in names if drawn[n]]
    if not usable:
        raise UserError("no font draws any character of the charset")
    train_fonts, test_fonts = _hold_out_fonts(cfg, counts["test"], usable, faces, rng)
    split_fonts = {"train": train_fonts, "val": train_fonts, "test": test_fonts or train_fonts}
    parts, shared = _word_parts(sources, counts, cfg.seed)
    draw = _TextDrawer(rng, frozenset(charset), mix, parts, split_fonts, drawn, shared)

    samples: dict[str, list[Sample]] = {}
    rows, n_cov, uncoverable = _train_rows(cfg, charset, counts["train"], draw, train_fonts)
    samples["train"] = [Sample("train", i, t, f, s) for i, (t, f, s) in enumerate(rows)]
    draw.used.update(s.text for s in samples["train"])
    for split in ("val", "test"):
        rows = draw(split, counts[split]) if counts[split] else []
        samples[split] = [Sample(split, i, t, f, s) for i, (t, f, s) in enumerate(rows)]
        draw.used.update(t for t, _, _ in rows)

    stats = {
        "planning_skips": dict(draw.skipped),
        "coverage_strings": n_cov,
        "uncoverable_chars": uncoverable,
        "fonts_without_ink": [n for n in names if not drawn[n]],
    }
    return Plan(samples, _split_info(cfg, samples, train_fonts, test_fonts, shared), stats)


# ---------------------------------------------------------------------------------------- rendering

_worker: dict = {}
_proto: dict = {}  # the parent's warmed-up renderer: forked workers inherit its background textures


def _init_worker(fmt: str, fonts: dict[str, str], root: str, child: bool = True) -> None:
    if child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate() stops workers with SIGTERM
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit becomes EFBIG, not a kill
    r: Renderer = _proto["renderer"]
    _worker.update(renderer=r, seed=r.seed, fmt=fmt, fonts=fonts, root=Path(root))


def image_name(index: int, fmt: str) -> str:
    return f"{IMAGES_DIR}/image_{index:06d}.{fmt}"


def _render_chunk(chunk: list[tuple[str, int, str, str]]) -> list[tuple[str, int, str | None]]:
    """Render and write a chunk of (split, index, text, font); returns (split, index, error or None)."""
    r: Renderer = _worker["renderer"]
    fmt, root, seed = _worker["fmt"], _worker["root"], _worker["seed"]
    out = []
    for split, index, text, font in chunk:
        try:
            img = r.render(text, _worker["fonts"][font], sample_rng(seed, f"{split}:{index}"))
        except RenderError as exc:
            out.append((split, index, str(exc)))
            continue
        r.save(img, root / split / image_name(index, fmt), fmt)
        out.append((split, index, None))
    return out


def render_items(
    items: list[tuple[str, int, str, str]],
    root: Path,
    options: RenderOptions,
    seed: int,
    fmt: str,
    font_paths: dict[str, str],
    workers: int,
    on_results: Callable[[list], None] | None = None,
) -> Counter:
    """Render (split, index, text, font name) items to ROOT/split/images/; returns the failed (split, index)."""
    proto = Renderer(options, seed)
    chars: dict[str, set[str]] = {}
    if workers > 1:
        for _, _, text, font in items:
            chars.setdefault(font_paths[font], set()).update(text)
    proto.warm(chars)
    _proto["renderer"] = proto
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    init = (fmt, font_paths, str(root))
    failed: Counter = Counter()

    def take(results: list) -> None:
        for split, index, err in results:
            if err:
                failed[(split, index)] = 1
        if on_results:
            on_results(results)

    if workers <= 1:
        _init_worker(*init, child=False)
        for chunk in chunks:
            take(_render_chunk(chunk))
    else:
        with mp.get_context("fork").Pool(workers, initializer=_init_worker, initargs=init) as pool:
            for res in pool.imap_unordered(_render_chunk, chunks):
                take(res)
    return failed


def _run_pillow(
    plan: Plan, tmp: Path, options: RenderOptions, cfg: DataConfig, font_paths: dict[str, str], progress: bool
) -> Counter:
    items = [(s.split, s.index, s.text, s.font) for split in SPLITS for s in plan.samples[split]]
    bar = tqdm(total=len(items), desc="rendering", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        return render_items(
            items,
            tmp,
            options,
            cfg.seed,
            cfg.image_format,
            font_paths,
            cfg.workers,
            lambda r: bar.update(len(r)),
        )
    finally:
        bar.close()


def _write_lists(plan: Plan, tmp: Path, fmt: str, failed: Counter) -> dict[str, int]:
    written = {}
    for split in SPLITS:
        d = tmp / split
        gt, side = [], []
        for s in plan.samples[split]:
            if (split, s.index) in failed:
                continue
            rel = image_name(s.index, fmt)
            gt.append(f"{rel}\t{s.text}\n")
            side.append(f"{rel}\t{s.font}\t{s.source}\n")
        written[split] = len(gt)
        if not gt:  # an empty split gets no directory: readers take every SPLIT/gt.txt they find
            shutil.rmtree(d, ignore_errors=True)
            continue
        (d / GT_FILE).write_text("".join(gt), encoding="utf-8")
        (d / SAMPLES_FILE).write_text("".join(side), encoding="utf-8")
    return written


def options_from(cfg: DataConfig) -> RenderOptions:
    if cfg.background not in BACKGROUNDS:
        raise UserError(f"unknown background '{cfg.background}' (one of: {', '.join(BACKGROUNDS)})")
    if cfg.height < 16:
        raise UserError(f"height must be >= 16 pixels, got {cfg.height}")
    if not 0 <= cfg.skew <= 45:
        raise UserError(f"skew must be within 0..45 degrees, got {cfg.skew:g}")
    if len(cfg.margins) != 4 or any(m < 0 for m in cfg.margins):
        raise UserError(
            f"margins must be 4 non-negative pixel counts (top left bottom right), got {cfg.margins}"
        )
    if sum(cfg.margins[::2]) > cfg.height // 2:
        raise UserError(
            f"top + bottom margins {cfg.margins[0]}+{cfg.margins[2]} leave no room in height {cfg.height}"
        )
    return RenderOptions(
        height=cfg.height,
        skew=cfg.skew,
        margins=tuple(cfg.margins),
        background=cfg.background,
        augment=cfg.augment,
    )


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # a pod being stopped cleans up like Ctrl-C


@contextlib.contextmanager
def _signals_as_errors():
    """SIGTERM cleans up like Ctrl-C; a file-size limit (SIGXFSZ) becomes an EFBIG error, not a kill."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _terminate)
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def generate(
    cfg: DataConfig,
    out: str | Path,
    fonts_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Generate OUT/{train,val,test} + split.json + card; returns the card."""
    say = echo or (lambda _m: None)
    if cfg.backend not in ("pillow", "trdg"):
        raise UserError(f"unknown backend '{cfg.backend}' (pillow or trdg)")
    if cfg.image_format not in ("jpg", "png"):
        raise UserError(f"unknown image format '{cfg.image_format}' (jpg or png)")
    if cfg.workers < 1:
        raise UserError("workers must be >= 1")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (use --overwrite to replace it)")
    options = options_from(cfg)
    mix = cfg.mix  # named and checked by the config
    charset = load_charset(cfg.charset)
    fonts = load_fonts(fonts_dir)
    drawn = {f.name: frozenset(drawn_chars(f, charset)) for f in fonts}
    sources = load_sources(charset, cfg.words, cfg.wordfreq_top, cfg.wordfreq_lang)
    ws = sources.stats.to_dict()
    say(
        "words: "
        + ", ".join(f"{name} {v['kept']} kept, {v['dropped']} dropped" for name, v in ws["sources"].items())
        + f"; {ws['out_of_charset_total']} characters outside {cfg.charset}"
        + (f" (most: {''.join(list(ws['out_of_charset_chars'])[:10])})" if ws["out_of_charset_total"] else "")
    )
    plan = make_plan(cfg, charset, sources, drawn, mix, faces={f.name: face_of(f) for f in fonts})
    font_paths = {f.name: f.path for f in fonts}
    say(
        f"plan: {sum(plan.split['counts'].values())} images; {len(plan.split['font_pool']['train_val'])} fonts "
        f"for train/val; test fonts held out: {', '.join(plan.split['test_fonts_held_out']) or 'none'}"
    )
    with _signals_as_errors(), staged_dir(out, overwrite) as tmp:
        for split in SPLITS:
            (tmp / split / IMAGES_DIR).mkdir(parents=True)
        if cfg.backend == "trdg":
            failed = render_with_trdg(plan, tmp, cfg, font_paths, progress)
        else:
            failed = _run_pillow(plan, tmp, options, cfg, font_paths, progress)
        written = _write_lists(plan, tmp, cfg.image_format, failed)
        if written["train"] == 0:
            raise UserError("no training image could be rendered")
        split = dict(plan.split, written=written, render_failures=len(failed))
        (tmp / "split.json").write_text(json.dumps(split, indent=2, ensure_ascii=False) + "\n", "utf-8")
        fonts_meta = [asdict(f) for f in fonts]
        for f in fonts_meta:
            f["drawn_of_charset"] = len(drawn[f["name"]])
        meta = {
            "generator": f"ocrtune {__version__}",
            "backend": cfg.backend,
            "config": asdict(cfg),
            "render_options": asdict(options),
            "fonts": fonts_meta,
            "words": sources.stats.to_dict()
            | {"korean_entries": len(sources.korean), "latin": len(sources.latin)},
            "plan": plan.stats,
        }
        card = write_card(
            tmp, charset=charset, charset_name=cfg.charset, meta=meta, coverage_min=cfg.coverage_min
        )
    say(
        f"wrote {out}: "
        + ", ".join(f"{s} {n}" for s, n in written.items())
        + f"; content {card['content_sha256'][:16]}"
    )
    return card

"""The dataset card: what is in a generated dataset, read back from the files themselves.

Counts, per-font counts, the character histogram and charset coverage, the split, the generation config, a
sample montage a person can look at, and a content hash (gt.txt + every image) that changes when any byte
of the data does. Written as card.json (for machines: MLflow, the KFP UI) and card.md (for people).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from PIL import Image

from ocrtune.data.gt_layout import GT_FILE, read_gt, read_samples
from ocrtune.files import atomic_path, sha256_file

SPLITS = ("train", "val", "test")
MONTAGE = "montage.png"


def content_hash(root: Path, splits: list[str]) -> str:
    """sha256 over each split's name, gt.txt bytes and every image's sha256, in gt.txt order."""
    h = hashlib.sha256()
    for split in splits:
        d = root / split
        h.update(split.encode() + b"\0" + (d / GT_FILE).read_bytes() + b"\0")
        for rel, _ in read_gt(d):
            h.update(bytes.fromhex(sha256_file(d / rel)))
    return h.hexdigest()


def montage(paths: list[Path], out: Path, width: int = 1200, row_h: int = 64, gap: int = 6) -> None:
    """Images laid out in rows at height ``row_h`` on a grey sheet, written atomically as PNG."""
    rows: list[list[Image.Image]] = [[]]
    x = 0
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            w = max(1, round(im.width * row_h / im.height))
            im = im.resize((min(w, width), row_h), Image.Resampling.BILINEAR)
        if x + im.width > width and rows[-1]:
            rows.append([])
            x = 0
        rows[-1].append(im)
        x += im.width + gap
    sheet = Image.new("RGB", (width, max(1, len(rows)) * (row_h + gap) + gap), (128, 128, 128))
    for r, row in enumerate(rows):
        x = gap
        for im in row:
            sheet.paste(im, (x, gap + r * (row_h + gap)))
            x += im.width + gap
    with atomic_path(out, mode=0o644) as tmp:
        sheet.save(tmp, format="PNG")


def _coverage(hist: Counter, charset: str, k: int) -> dict:
    return {
        "charset_size": len(charset),
        "present": sum(1 for c in charset if hist[c] > 0),
        "at_least_k": sum(1 for c in charset if hist[c] >= k),
        "min_count": min((hist[c] for c in charset), default=0),
        "missing": "".join(c for c in charset if hist[c] == 0),
        "not_in_charset": dict(Counter({c: n for c, n in hist.items() if c not in set(charset)})),
    }


def write_card(root: Path, charset: str, charset_name: str, meta: dict, coverage_min: int = 1) -> dict:
    """Read ROOT/{train,val,test}, write ROOT/card.json, card.md and montage.png; return the card."""
    root = Path(root)
    splits = [s for s in SPLITS if (root / s / GT_FILE).is_file() and (root / s / GT_FILE).stat().st_size]
    counts, fonts, sources, hists = {}, {}, {}, {}
    picks: list[Path] = []
    for split in splits:
        d = root / split
        rows = read_gt(d)
        side = read_samples(d)
        counts[split] = len(rows)
        fonts[split] = dict(Counter(side[r][0] for r, _ in rows if r in side).most_common())
        sources[split] = dict(Counter(side[r][1] for r, _ in rows if r in side).most_common())
        hists[split] = Counter("".join(label for _, label in rows))
        step = max(1, len(rows) // (24 if split == "train" else 8))
        picks += [d / r for r, _ in rows[::step][: 24 if split == "train" else 8]]
    total = sum(hists.values(), Counter())
    k = max(1, coverage_min)
    split_file = root / "split.json"
    card = {
        "counts": counts,
        "fonts": fonts,
        "sources": sources,
        "charset": charset_name,
        "coverage": {
            "k": k,
            "train": _coverage(hists.get("train", Counter()), charset, k),
            "all": _coverage(total, charset, k),
        },
        "char_histogram": dict(total.most_common()),
        "split": json.loads(split_file.read_text("utf-8")) if split_file.is_file() else None,
        "generation": meta,
        "montage": MONTAGE,
        "content_sha256": content_hash(root, splits),
    }
    if picks:
        montage(picks, root / MONTAGE)
    (root / "card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (root / "card.md").write_text(card_markdown(card), "utf-8")
    return card


def card_markdown(card: dict) -> str:
    cov = card["coverage"]
    tr = cov["train"]
    lines = [
        "# Dataset card",
        "",
        f"- content sha256: `{card['content_sha256']}`",
        f"- charset: {card['charset']} ({tr['charset_size']} characters)",
        f"- train coverage: {tr['present']} characters present, {tr['at_least_k']} at least {cov['k']} times, "
        f"rarest {tr['min_count']}; missing ({len(tr['missing'])}): "
        + (tr["missing"][:120] + (" ..." if len(tr["missing"]) > 120 else "") or "none"),
        "",
        "| split | images | fonts | sources |",
        "|---|---:|---|---|",
    ]
    for split, n in card["counts"].items():
        f = ", ".join(f"{k} {v}" for k, v in card["fonts"].get(split, {}).items())
        s = ", ".join(f"{k} {v}" for k, v in card["sources"].get(split, {}).items())
        lines.append(f"| {split} | {n} | {f} | {s} |")
    split = card.get("split") or {}
    if split:
        lines += [
            "",
            f"Split by {' and '.join(split.get('by', []))}; test fonts held out of training: "
            f"{', '.join(split.get('test_fonts_held_out', [])) or 'none'}; text overlap {split.get('overlap')}.",
        ]
    hist = list(card["char_histogram"].items())
    lines += [
        "",
        "Most frequent characters: " + " ".join(f"`{c}` {n}" for c, n in hist[:20]),
        "",
        "Rarest characters: " + " ".join(f"`{c}` {n}" for c, n in hist[-20:]),
        "",
        f"![samples]({card['montage']})",
        "",
    ]
    gen = card.get("generation") or {}
    if gen:
        lines += [
            "## Generation",
            "",
            "```json",
            json.dumps(gen.get("config", {}), ensure_ascii=False),
            "```",
            "",
        ]
        fonts = gen.get("fonts", [])
        if fonts:
            lines += [
                "| font | source | package | version | licence | drawn of charset |",
                "|---|---|---|---|---|---:|",
            ]
            lines += [
                f"| {f['name']} | {f['source']} | {f['package']} | {f['version']} | {f['license']} | "
                f"{f.get('drawn_of_charset', '')} |"
                for f in fonts
            ]
            lines.append("")
    return "\n".join(lines)

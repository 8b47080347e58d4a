"""The pipeline's visualizations for the KFP UI: self-contained HTML pages (images as data: URIs, no links).

The dataset card (counts, per-font counts, the montage), the training curves, and the evaluation report
(val and held-out-typeface test scores beside the base model's, per-font accuracy, sample predictions with
their images). The KFP UI shows an HTML artifact in a sandboxed frame: nothing here may fetch anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocrtune.release.html_page import METRICS, esc, fig, img, page, table


# ---- the dataset card ----------------------------------------------------------------------------------
def card_html(card: Mapping[str, Any], montage: Path | None) -> str:
    split = card.get("split") or {}
    fonts = sorted({f for per in card.get("fonts", {}).values() for f in per})
    counts = card.get("counts", {})
    per_font = [[esc(f), *(card["fonts"].get(s, {}).get(f, 0) for s in counts)] for f in fonts]
    cov = card.get("coverage", {}).get("train", {})
    real = (card.get("generation") or {}).get("real_data")
    body = [
        f"<p>content sha256 <code>{esc(card.get('content_sha256', ''))}</code>; charset "
        f"{esc(card.get('charset', ''))}; train coverage {cov.get('present', 0)}/{cov.get('charset_size', 0)}"
        " characters present</p>",
        f"<p>test split: typefaces held out of training: "
        f"{esc(', '.join(split.get('test_fonts_held_out', [])) or 'none')}</p>",
        f"<p>real crops mixed into train: {esc(real) if real else 'none'}</p>",
        "<h2>Images per split</h2>",
        table(["split", "images"], [[esc(s), n] for s, n in counts.items()]),
        "<h2>Images per font</h2>",
        table(["font", *counts], per_font),
    ]
    if montage is not None and montage.is_file():
        body += ["<h2>Samples</h2>", img(montage.read_bytes(), "montage of training, val and test crops")]
    return page("Dataset card", body)


# ---- training ------------------------------------------------------------------------------------------
def curves_html(result: Mapping[str, Any], png: Path | None) -> str:
    history = result.get("history") or []
    rows = [
        [
            h["step"],
            fig(h.get("train_loss")),
            fig(h.get("valid_loss")),
            fig(h.get("accuracy")),
            fig(h.get("norm_ED")),
        ]
        for h in history
    ]
    body = [
        f"<p>{esc(result.get('status', ''))} at step {esc(result.get('step', ''))}, started from "
        f"<code>{esc(result.get('base_model', ''))}</code>; best word accuracy "
        f"{fig(result.get('best_accuracy'))}, best norm_ED {fig(result.get('best_norm_ED'))}; "
        f"{fig(result.get('samples_per_s'))} samples/s</p>",
    ]
    if png is not None and png.is_file():
        body.append(img(png.read_bytes(), "training curves"))
    body += [
        "<h2>Validations</h2>",
        table(["step", "train loss", "valid loss", "word acc", "norm_ED"], rows, 0),
    ]
    return page("Training curves", body)


# ---- evaluation ----------------------------------------------------------------------------------------
def _score_rows(ev: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for split in ("val", "test"):
        for who, scores in (
            ("fine-tuned (ocrtune)", ev[split]["ocrtune"]),
            ("fine-tuned (easyocr.Reader)", ev[split]["easyocr"]),
            (f"base {ev['base_model']} (easyocr.Reader)", ev["base"][split]),
        ):
            rows.append([esc(split), esc(who), *(fig(scores[m]) for m in METRICS)])
    return rows


def report_html(
    ev: Mapping[str, Any], samples: Sequence[Mapping[str, Any]], errors: Sequence[str] = ()
) -> str:
    """Scores, parity, per-font accuracy, sample predictions (``samples``: image bytes, gt, pred, base) and
    the test split's error report (``errors``: its HTML sections)."""
    fonts = sorted({f for s in ("val", "test") for f in ev[s]["per_font"]})
    per_font = [
        [
            esc(f),
            *(fig(ev[s]["per_font"].get(f)) for s in ("val", "test")),
            fig(ev["base"]["per_font"].get(f)),
        ]
        for f in fonts
    ]
    par = [
        [esc(s), fig(ev[s]["parity"]["agreement"]), esc("ok" if ev[s]["parity"]["ok"] else "FAILED")]
        for s in ("val", "test")
    ]
    preds = [
        [
            img(s["image"], s["gt"], 32),
            esc(s["gt"]),
            f'<span class="{"ok" if s["pred"] == s["gt"] else "bad"}">{esc(s["pred"])}</span>',
            esc(s["font"] or "-"),
            f'<span class="{"ok" if s["base"] == s["gt"] else "bad"}">{esc(s["base"])}</span>',
        ]
        for s in samples
    ]
    body = [
        "<p>test = typefaces held out of training; word_acc and norm_ed: higher is better, cer: lower.</p>",
        table(["split", "model", *METRICS], _score_rows(ev), 2),
        f"<p>base model {esc(ev['base_model'])}, untrained: {esc(ev['base'].get('how') or 'as shipped')}</p>",
        "<h2>Reader parity (ocrtune vs plain easyocr.Reader on the same export)</h2>",
        table(["split", "agreement", "parity"], par),
        "<h2>Word accuracy per font</h2>",
        table(["font", "val", "test", "base (test)"], per_font),
        "<h2>Word accuracy per kind of text (test): fine-tuned vs base</h2>",
        table(
            ["kind", "samples", "fine-tuned", f"base {ev['base_model']}"],
            [
                [esc(k), v["samples"], fig(v["model"]), fig(v["base"])]
                for k, v in ev["test"].get("per_text_class", {}).items()
            ],
        ),
        "<h2>Sample predictions (test)</h2>",
        table(["image", "ground truth", "fine-tuned", "font", "base"], preds, 5),
    ]
    if errors:
        body += ["<h2>Where the fine-tuned model goes wrong (test, easyocr.Reader's reading)</h2>", *errors]
    return page("Evaluation", body)

"""evaluate: its compiled spec, and its body for real: val and held-out test, ocrtune and Reader, the base beside."""

import json

from ocrtune.components.evaluate import evaluate
from ocrtune.components.image import image
from support.kfp_chain import compiled, evaluation, executor, interface


def test_spec(tmp_path):
    spec = compiled(evaluate, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {"profile": "STRING", "base_model": "STRING"}
    assert arts_in == {"model": "system.Model", "lmdb": "system.Dataset", "dataset": "system.Dataset"}
    assert arts_out == {"metrics": "system.Metrics", "report": "system.HTML", "evaluation": "system.Artifact"}


def test_body_scores_both_splits_both_readers_and_the_base(tmp_path_factory):
    path, values = evaluation(tmp_path_factory.getbasetemp())
    ev = json.loads(path.read_text())
    for split in ("val", "test"):
        for who in ("ocrtune", "easyocr"):
            assert set(ev[split][who]) == {"word_acc", "cer", "norm_ed"}
        assert ev[split]["parity"]["samples"] == 10
        assert ev[split]["parity"]["ok"], ev[split]["parity"]  # 2 steps at a low rate: confident, in parity
        assert 0 <= ev["base"][split]["word_acc"] <= 1
        assert values[f"{split}_word_acc"] == ev[split]["easyocr"]["word_acc"]
        assert values[f"base_{split}_cer"] == ev["base"][split]["cer"]
    assert ev["base_model"] == "english_g2" and ev["charset"] == "english_g2"
    # the test split is typefaces held out of training: its per-font table names only those
    card = json.loads((path.parent.parent / "generate" / "dataset" / "card.json").read_text())
    assert set(ev["test"]["per_font"]) == set(card["split"]["test_fonts_held_out"])
    html = (path.parent / "report.html").read_text()
    assert html.count("data:image/") >= 10 and 'src="http' not in html
    assert "held out" in html
    # the test split's error report: in the evaluation, and in the view the KFP UI shows
    errors = ev["test"]["errors"]
    assert (
        errors["overall"]["samples"] == 10
        and errors["overall"]["word_acc"] == ev["test"]["easyocr"]["word_acc"]
    )
    assert (
        set(errors["per_font"]) == set(ev["test"]["per_font"]) and errors["per_class"]["latin"]["chars"] > 0
    )
    assert "Top confusions" in html and "Per character class" in html
    kinds = ev["test"]["per_text_class"]
    assert sum(v["samples"] for v in kinds.values()) == 10 and "per kind of text" in html
    assert ev["test"]["behind_base"] == sorted(k for k, v in kinds.items() if v["model"] < v["base"])

"""Validation scores: edit distance, DTRB's norm_ED, CER, per-font accuracy, and scores of a real model."""

from __future__ import annotations

import random

import torch

from ocrtune.model.decode import decode_greedy
from ocrtune.model.network import Model
from ocrtune.training.validation import Scores, edit_distance, norm_ed_one, prediction_table, score, validate


def _dp_reference(a: str, b: str) -> int:
    """Independent full-matrix Wagner-Fischer, to check the rolling-row version."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


def test_edit_distance_known_cases_and_random_against_reference():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("한국어", "한국") == 1
    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("ab가나") for _ in range(rng.randint(0, 8)))
        b = "".join(rng.choice("ab가나") for _ in range(rng.randint(0, 8)))
        assert edit_distance(a, b) == _dp_reference(a, b) == edit_distance(b, a)


def test_norm_ed_is_icdar2019_as_dtrb_counts_it():
    assert norm_ed_one("abcd", "abcd") == 1.0
    assert norm_ed_one("abcd", "abxd") == 0.75  # 1 - 1/4
    assert norm_ed_one("ab", "abcd") == 0.5  # max length is the prediction's: 1 - 2/4
    assert norm_ed_one("abc", "") == 0.0 and norm_ed_one("", "abc") == 0.0


def test_score_accuracy_cer_norm_ed_and_per_font():
    gts = ["가나", "abc", "hello", "x"]
    preds = ["가나", "abd", "helo", ""]
    s = score(gts, preds, [0.9, 0.5, 0.4, 0.0])
    assert s["accuracy"] == 0.25
    assert abs(s["cer"] - (0 + 1 + 1 + 1) / (2 + 3 + 5 + 1)) < 1e-12
    assert abs(s["norm_ED"] - (1 + (1 - 1 / 3) + (1 - 1 / 5) + 0) / 4) < 1e-12
    assert abs(s["mean_confidence"] - 0.45) < 1e-12
    a, b = Scores(), Scores()
    a.add("가", "가", 1.0, "FontA")
    a.add("나", "다", 1.0, "FontA")
    b.add("x", "x", 1.0, "FontB")
    b.add("y", "y", 1.0, "FontA")
    a.merge(b)
    summary = a.summary()
    assert summary["per_font"] == {"FontA": 2 / 3, "FontB": 1.0}
    assert summary["samples"] == 4 and summary["accuracy"] == 0.75


def test_prediction_table_is_dtrbs():
    table = prediction_table([("abc", "abc", 0.98765), ("가나", "가", 0.5)])
    lines = table.splitlines()
    assert lines[0] == "-" * 80 and lines[2] == "-" * 80 and lines[-1] == "-" * 80
    assert lines[1].startswith("Ground Truth") and lines[1].endswith("| Confidence Score & T/F")
    assert lines[3].endswith("| 0.9877\tTrue") and lines[4].endswith("| 0.5000\tFalse")


def test_validate_a_real_model_matches_decode_and_restores_train_mode():
    torch.manual_seed(0)
    charset = "abc"
    model = Model(num_class=len(charset) + 1)
    model.train()
    images = torch.randn(3, 1, 64, 96)
    batch = {
        "images": images,
        "labels": ["ab", "c", "abc"],
        "fonts": ["F1", "F2", "F1"],
        "targets": torch.tensor([1, 2, 3, 1, 2, 3]),
        "lengths": torch.tensor([2, 1, 3]),
    }
    result = validate(model, [batch], charset)
    assert model.training
    model.eval()
    with torch.no_grad():
        decoded = decode_greedy(model(images), charset)
    expected = score(batch["labels"], [p for p, _ in decoded], [c for _, c in decoded])
    for key in ("accuracy", "cer", "norm_ED", "mean_confidence"):
        assert abs(result[key] - expected[key]) < 1e-9, key
    assert set(result["per_font"]) == {"F1", "F2"}
    assert result["loss"] > 0 and len(result["examples"]) == 3
